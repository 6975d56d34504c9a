"""``samgeo-pipeline serve``: a read-only HTTP server for an output root (:mod:`.server`) and its
connection limits (:mod:`.limits`); outside the segment pipeline, which never imports it.
``python -m samgeo_pipeline.serve OUTPUT_ROOT`` runs it on its own."""
