"""Every full-scale recipe in recipes/ parses into a valid TrainConfig (cheap: nothing is trained)."""

from pathlib import Path

import pytest

from dfkd_lib.cli import build_config, make_parser

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
FILES = sorted(RECIPES.rglob("*.yaml"))


def test_there_are_recipes():
    assert len(FILES) >= 15


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_parses(path):
    parser = make_parser()
    if path.name.startswith("teacher-"):
        arch = path.stem.removeprefix("teacher-")
        args = parser.parse_args(["train-teacher", "--config", str(path), "--arch", arch])
        cfg = build_config(args, {"method": "scratch", "student": arch})
        assert cfg.method == "scratch" and cfg.student == arch
    else:
        cfg = build_config(parser.parse_args(["train", "--config", str(path)]))
        assert cfg.method == path.stem
        if cfg.method != "scratch":  # the student reads the teacher that its folder's teacher file trains
            (teacher_file,) = path.parent.glob("teacher-*.yaml")
            assert cfg.teacher == f"runs/full/{path.parent.name}/{teacher_file.stem}/model.pt"
    assert cfg.schedule == "step" and cfg.val_size == 5000
