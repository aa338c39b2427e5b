"""Model compression: structured channel pruning (``prune``) and the channel layouts that let a
pruned checkpoint rebuild its slim network from plain data (``layout``)."""
