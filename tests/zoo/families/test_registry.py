from __future__ import annotations

import subprocess
import sys

import pytest

from green_deploy.errors import ModelNotFoundError
from green_deploy.zoo.families import get_family, known_families


@pytest.mark.parametrize("name", known_families())
def test_every_family_is_registered_and_light_to_import(name):
    """Importing a family (e.g. to read its settings) loads no framework; building does."""
    code = (
        "import sys; from green_deploy.zoo.families import get_family; "
        f"family = get_family({name!r}); "
        "heavy = {'torch', 'tensorflow', 'tf_keras', 'transformers'} & set(sys.modules); "
        "assert not heavy, heavy; print(family.name)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == name


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ModelNotFoundError, match="known: byte_lstm"):
        get_family("resnet")
