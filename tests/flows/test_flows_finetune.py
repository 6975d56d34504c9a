"""The finetune flow: option layering, artifacts and links, with the training itself stubbed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows import finetune as ft


def test_build_config_layers_file_then_options(tmp_path: Path) -> None:
    path = tmp_path / "ft.yaml"
    path.write_text("epochs: 3\nlr: 0.0001\n")
    config = ft.build_finetune_config({"epochs": 2, "out": str(tmp_path / "run")}, str(path))
    assert (config.epochs, config.lr, config.out, config.progress) == (2, 1e-4, str(tmp_path / "run"), False)
    assert ft.build_finetune_config({}, str(path), default_out="/srv/o/finetune").out == "/srv/o/finetune"


def test_history_rows_and_links(tmp_path: Path) -> None:
    rows = ft.history_rows([{"epoch": 1, "train_loss": 0.123456, "val_loss": None, "val": {"iou_mean": 0.5},
                             "lr": 1e-5, "seconds": 3.21}])
    assert rows == [{"epoch": 1, "train loss": 0.1235, "val loss": None, "val IoU mean": 0.5, "val F1 mean": None,
                     "lr": 1e-5, "seconds": 3.2}]
    (tmp_path / "out" / "run" / "best").mkdir(parents=True)
    (tmp_path / "elsewhere.png").write_bytes(b"x")
    links = ft.result_links({"best": tmp_path / "out" / "run" / "best", "curves": tmp_path / "elsewhere.png",
                             "none": None}, tmp_path / "out", "http://h:1/")
    assert links == {"best": "http://h:1/run/best/"}


@pytest.mark.usefixtures("prefect_harness")
def test_flow_holds_gpu_and_reports(tmp_path: Path, monkeypatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    import samgeo_pipeline.finetune.train as train_module

    seen = []

    def fake_finetune(config, log=print):
        seen.append(config)
        out = Path(config.out)
        (out / "best").mkdir(parents=True)
        (out / "last").mkdir()
        (out / "curves.png").write_bytes(b"\x89PNG")
        log("epoch 1/1")
        return train_module.FinetuneResult(
            out_dir=out, best_dir=out / "best", last_dir=out / "last", best_epoch=1, completed=True,
            curves=out / "curves.png", seconds={"total": 1.0}, counts={"train": 2, "val": 1},
            history=[{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val": {"iou_mean": 0.7, "f1_mean": 0.8},
                      "lr": 1e-5, "seconds": 1.0}],
        )

    monkeypatch.setattr(train_module, "finetune", fake_finetune)
    root = tmp_path / "outputs"
    state = ft.finetune_flow({"data": "some/chips", "epochs": 1}, output_root=str(root),
                             output_base_url="http://127.0.0.1:8000/", return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["best_epoch"] == 1 and summary["best_dir"] == str(root / "finetune" / "best")
    assert seen[0].epochs == 1 and seen[0].progress is False
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    table = next(a for a in artifacts if a.key == "finetune-history")
    assert json.loads(table.data)[0]["val IoU mean"] == 0.7
    text = " ".join(a.data for a in artifacts if a.type == "markdown")
    assert "http://127.0.0.1:8000/finetune/best/" in text and "http://127.0.0.1:8000/finetune/curves.png" in text
