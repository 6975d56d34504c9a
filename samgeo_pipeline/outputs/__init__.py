"""What an image's run writes: raster writers (mask and probability COGs), polygons, the
quicklook, ``manifest.json`` and the STAC Item and catalog."""
