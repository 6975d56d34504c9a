"""Inputs and the file system: opening rasters, band mapping, reflectance, dates, STAC Items as
inputs, size limits, the tile grid, output folders and paths, atomic writes."""
