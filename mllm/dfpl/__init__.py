"""DFPL: image-tabular classification robust to missing modalities (shared/specific prototypes, PFA, CMA)."""
