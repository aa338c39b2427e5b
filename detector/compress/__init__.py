"""Model compression: structured channel pruning (``prune``), the channel layouts that let a pruned
checkpoint rebuild its slim network from plain data (``layout``), cross-layer equalisation of
conv pairs before INT8 quantisation (``equalize``) and quantisation-aware training (``qat``).
Distillation is ``detector.distill``; INT8 conversion and its sensitivity report are
``detector.export.quantize``."""
