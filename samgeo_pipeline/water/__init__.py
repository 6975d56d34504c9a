"""Where the water is before SAM: whole-image radiometry, the coarse water rule of each method
(published per-pixel tests, fitted indices, RGB darkness) and the prompts drawn from its mask."""
