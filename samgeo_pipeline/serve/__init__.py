"""``samgeo-pipeline serve``: a read-only HTTP server for an output root (:mod:`.server`), what a
request may reach (:mod:`.paths`), its connection limits (:mod:`.limits`) and its command line
(:mod:`.command`); outside the segment pipeline, which never imports it.
``python -m samgeo_pipeline.serve OUTPUT_ROOT`` runs it on its own."""
