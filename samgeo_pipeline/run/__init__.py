"""Running the stages: one image end to end (:mod:`.image`), a batch of inputs (:mod:`.batch`),
and the tile loop between them: tiles prepared ahead of the model (:mod:`.prepare`), SAM on
batches of them (:mod:`.inference`), their cores written to the outputs (:mod:`.sink`)."""
