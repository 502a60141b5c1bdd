"""Build benchmark trees from the official dataset archives: ``prepare_pascal5i`` (VOC 2012 + SBD) and
``prepare_coco20i`` (COCO 2014)."""
