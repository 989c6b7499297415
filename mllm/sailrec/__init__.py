"""SAILRec (arXiv 2606.04514): an LLM recommender that reads collaborative (MF) embeddings as soft tokens, with
dual-side semantic alignment and hierarchical attention steering, on CoLLM's yes/no protocol.

``python -m mllm.sailrec train|eval|diagnose``; see docs/sailrec.md.
"""
