"""cks: collaborative knowledge sharing for point-supervised single-cell segmentation."""
