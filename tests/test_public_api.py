"""The public API: every name of ``jtln.__all__`` resolves to its module's object, and ``import jtln`` stays light."""

import subprocess
import sys

import jtln


def test_every_public_name_is_its_modules_object():
    import importlib

    for name in jtln.__all__:
        assert getattr(jtln, name) is getattr(importlib.import_module(jtln._EXPORTS[name]), name), name
    assert set(jtln.__all__) <= set(dir(jtln))


def test_importing_jtln_imports_no_torch_and_the_ot_loss_no_optuna():
    code = ("import sys, jtln; assert 'torch' not in sys.modules, 'torch'; jtln.OTLoss; "
            "assert 'optuna' not in sys.modules and 'timm' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_name_says_so():
    import pytest

    with pytest.raises(AttributeError, match="module 'jtln' has no attribute 'OTloss'"):
        jtln.OTloss  # noqa: B018


def test_the_public_functions_are_typed_and_the_package_says_so():
    import inspect
    from pathlib import Path

    typed = [jtln.ot_loss, jtln.ot_loss_with_logits, jtln.OTLoss.__init__, jtln.OTLoss.forward, jtln.mmd_cost_matrix,
             jtln.ot_cost_matrix, jtln.class_cost_matrix, jtln.normalize_cost, jtln.build_backbone, jtln.JTLN.__init__,
             jtln.JTLN.forward]
    for function in typed:
        signature = inspect.signature(function)
        untyped = [p.name for p in signature.parameters.values()
                   if p.name != "self" and p.kind is not p.VAR_KEYWORD and p.annotation is inspect.Parameter.empty]
        assert not untyped and signature.return_annotation is not inspect.Signature.empty, (function.__qualname__, untyped)
    assert (Path(jtln.__file__).parent / "py.typed").is_file()
