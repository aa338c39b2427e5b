"""A pruned model's channel layout as plain data, and rebuilding the slim model from it.

A layout maps the dotted name of every ``Conv2d`` and ``BatchNorm2d`` whose width differs from
the architecture's to its new width: ``{"backbone.stem.conv.conv": [12, 8], "...bn": [8]}``
(``[in_channels, out_channels]`` for a conv, ``[num_features]`` for a BatchNorm). It is what a
pruned checkpoint's config holds under ``model.channel_layout``: lists of ints, loadable with
``weights_only=True``, so that ``build_model`` rebuilds the slim network and no module is pickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

#: The modules whose widths a layout records.
RESIZABLE = (nn.Conv2d, nn.BatchNorm2d)


def module_widths(module: nn.Module) -> list[int]:
    """``[in_channels, out_channels]`` of a conv, ``[num_features]`` of a BatchNorm."""
    if isinstance(module, nn.Conv2d):
        return [int(module.in_channels), int(module.out_channels)]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return [int(module.num_features)]
    raise TypeError(f"{type(module).__name__} has no channel widths a layout records")


def read_channel_layout(model: nn.Module, reference: nn.Module) -> dict[str, list[int]]:
    """The layout of ``model`` against ``reference`` (the same architecture, unpruned): every
    conv and BatchNorm whose widths differ, by dotted name."""
    widths = {name: module_widths(m) for name, m in reference.named_modules() if isinstance(m, RESIZABLE)}
    layout = {}
    for name, module in model.named_modules():
        if isinstance(module, RESIZABLE):
            if name not in widths:
                raise ValueError(f"{name}: not in the reference model; the two architectures differ")
            if module_widths(module) != widths[name]:
                layout[name] = module_widths(module)
    return layout


def _resized(module: nn.Module, widths: Sequence[int], name: str) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        if len(widths) != 2:
            raise ValueError(f"{name}: {list(widths)}; a conv's widths are [in_channels, out_channels]")
        c_in, c_out = (int(w) for w in widths)
        groups = 1
        if module.groups > 1:
            # Depthwise convs stay depthwise (one filter per channel); other grouped convs keep
            # their group count, which both widths must still divide.
            depthwise = module.groups == module.in_channels == module.out_channels
            if depthwise and c_in != c_out:
                raise ValueError(f"{name}: {list(widths)}; a depthwise conv keeps in_channels == out_channels")
            groups = c_in if depthwise else module.groups
            if c_in % groups or c_out % groups:
                raise ValueError(f"{name}: {list(widths)} do not split into {groups} groups")
        return nn.Conv2d(
            c_in,
            c_out,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    if len(widths) != 1:
        raise ValueError(f"{name}: {list(widths)}; a BatchNorm's width is [num_features]")
    return type(module)(
        int(widths[0]),
        eps=module.eps,
        momentum=module.momentum,
        affine=module.affine,
        track_running_stats=module.track_running_stats,
    )


def apply_channel_layout(model: nn.Module, layout: Mapping[str, Sequence[int]]) -> nn.Module:
    """Replace each module named in ``layout`` by a freshly initialised one of the given widths,
    in place (on the default device, as the model is being built); returns ``model``.
    ``ValueError`` naming the entry when a name is not a conv or BatchNorm of the model or its
    widths are not positive integers in the right number."""
    modules = dict(model.named_modules())
    for name, widths in layout.items():
        module = modules.get(name)
        if not isinstance(module, RESIZABLE):
            raise ValueError(f"{name}: not a Conv2d or BatchNorm2d of this model (is the layout from another config?)")
        if not isinstance(widths, Sequence) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
        ):
            raise ValueError(f"{name}: {widths!r}; expected a list of positive channel counts")
        parent_name, _, attr = name.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, attr, _resized(module, widths, name))
    return model
