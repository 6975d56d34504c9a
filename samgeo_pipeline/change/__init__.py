"""``samgeo-pipeline change``: how the water changed between dates of one place, from finished
output folders: the run (:mod:`.compare`), its rasters (:mod:`.raster`) and its files
(:mod:`.outputs`)."""
