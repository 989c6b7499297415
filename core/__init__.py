"""The bottom layer every package may import: atomic writes, JSONL reading, run provenance, CLI plumbing.

It imports nothing of ours and nothing heavy (no torch, no numpy), so a CLI's error path stays cheap.
"""
