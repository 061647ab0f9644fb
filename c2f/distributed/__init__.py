"""Beyond one machine: folder refine on a Ray cluster and data-parallel training, over the same core functions.

Ray is imported only here, and only when --ray or --workers asks for it.
"""
