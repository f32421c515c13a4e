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
