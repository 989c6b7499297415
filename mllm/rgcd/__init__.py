"""RGCD-Rep (arXiv 2606.04448): reasoning-guided cross-domain item representations for a cold target domain.

Stages (one module each): ``teach`` (structured teacher reasoning, cached), ``student`` (LoRA + summary tokens),
``represent`` (transferable + residual parts), ``two_tower`` (target-domain retrieval); ``data`` builds the
two-domain sets and ``pipeline`` wires the stages for ``python -m mllm.rgcd``.
"""
