"""Runtime: load, Classifier, Regressor and Generator on real ONNX Runtime sessions."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgekit
from edgekit.errors import InputError
from edgekit.exporters import bundle_from_checkpoint
from edgekit.manifest import MANIFEST
from tests.conftest import train_tiny


@pytest.fixture(scope="module")
def bundles(
    tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for name in ("linear", "logistic", "cnn", "lenet"):
        out[name], _ = bundle_from_checkpoint(tiny_checkpoints[name], root / name, steps=0)
    lm = train_tiny("charlm", root / "ck-lm", hidden=24, layers=2, max_chars=8000)
    out["charlm"], _ = bundle_from_checkpoint(lm.path, root / "charlm", steps=20)  # type: ignore[attr-defined]
    return out


# --- loading ------------------------------------------------------------------------------------------


def test_load_returns_the_task_object(bundles: dict[str, Path]) -> None:
    assert edgekit.load(bundles["linear"]).task == "regress"
    assert edgekit.load(bundles["cnn"]).task == "classify"
    assert edgekit.load(bundles["charlm"]).task == "generate"


def test_auto_device_picks_an_available_provider(bundles: dict[str, Path]) -> None:
    import onnxruntime as ort

    model = edgekit.load(bundles["linear"], device="auto")
    expected = {
        "CPUExecutionProvider": "cpu",
        "CUDAExecutionProvider": "cuda",
        "TensorrtExecutionProvider": "tensorrt",
    }
    assert model.device in {expected[p] for p in ort.get_available_providers() if p in expected}


def test_missing_device_is_an_error_listing_providers(bundles: dict[str, Path]) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA, so device='cuda' is valid here")
    with pytest.raises(InputError, match="available providers: .*CPUExecutionProvider"):
        edgekit.load(bundles["linear"], device="cuda")
    with pytest.raises(InputError, match="known devices: auto, cpu, cuda, tensorrt"):
        edgekit.load(bundles["linear"], device="npu")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_or_truncated_model_is_refused(
    bundles: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    import shutil

    b = tmp_path / "b"
    shutil.copytree(bundles["lenet"], b)
    data = bytearray((b / "model.onnx").read_bytes())
    if damage == "flip":
        data[100] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256 does not match the manifest"):
        edgekit.load(b)


def test_loading_never_writes_into_the_bundle(
    bundles: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only bundle loads; the optimised graph goes to the user cache, keyed by the bundle."""
    import shutil
    import stat

    b = tmp_path / "b"
    shutil.copytree(bundles["lenet"], b)
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    before = sorted(p.name for p in b.iterdir())
    for f in [*b.iterdir(), b]:
        f.chmod(f.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        edgekit.load(b, cache_optimized=True, threads=1)
        edgekit.load(b, device="auto")
    finally:
        b.chmod(0o755)
    assert sorted(p.name for p in b.iterdir()) == before
    cached = list((tmp_path / "cache").glob("*/model.cpu.optimized.onnx"))
    assert len(cached) == 1 and cached[0].stat().st_size > 0


def test_inputs_are_validated_before_onnxruntime(bundles: dict[str, Path]) -> None:
    model = edgekit.load(bundles["lenet"])
    with pytest.raises(InputError, match=r"axis 2 is 20, expected 28"):
        model.predict(np.zeros((1, 1, 20, 28), np.float32))
    with pytest.raises(InputError, match="dtype int64, expected float32"):
        model.backend.run({"image": np.zeros((1, 1, 28, 28), np.int64)})
    with pytest.raises(InputError, match=r"missing inputs \['image'\]"):
        model.backend.run({"pixels": np.zeros((1, 1, 28, 28), np.float32)})


# --- torch-free ---------------------------------------------------------------------------------------

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnxscript', 'safetensors', 'sklearn'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_the_runtime_never_imports_torch(bundles: dict[str, Path], tmp_path: Path) -> None:
    img = tmp_path / "x.png"
    Image.new("RGB", (50, 40), (10, 200, 30)).save(img)
    code = (
        BLOCK_TORCH
        + f"""
import numpy as np, edgekit
g = edgekit.load({str(bundles["charlm"])!r})
text = g.generate("the ", 30, temperature=0)
s = g.session(); s.feed("a"); s.step(0)
c = edgekit.load({str(bundles["cnn"])!r}).predict([{str(img)!r}])
r = edgekit.load({str(bundles["linear"])!r}).predict(np.array([[25.0, 3.0]], np.float32))
from typer.testing import CliRunner
from edgekit.cli import app
for args in (["generate", {str(bundles["charlm"])!r}, "--max-new-tokens", "5"],
             ["classify", {str(bundles["cnn"])!r}, {str(img)!r}],
             ["predict", {str(bundles["linear"])!r}, "25,3"]):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnxscript')], 'heavy import'
print('ok', len(text), c[0].label, float(r[0]))
"""
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok 30")


# --- Classifier and Regressor -------------------------------------------------------------------------


def _sample_photos(tmp_path: Path) -> list[Path]:
    """Two real photographs shipped with scikit-learn, saved as JPEG and PNG files."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    paths = [tmp_path / "Cat" / "china.jpg", tmp_path / "Dog" / "flower.png"]
    for arr, path in zip(photos, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
    return paths


def test_runtime_preprocessing_equals_training_evaluation(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    from edgekit.data.images import batch_arrays, read_image_folder
    from edgekit.preprocess import preprocess_images

    paths = _sample_photos(tmp_path)
    spec = json.loads((bundles["cnn"] / MANIFEST).read_text())["preprocess"]
    training = batch_arrays(read_image_folder(tmp_path).images, spec, augment_rng=None)
    runtime = preprocess_images([str(p) for p in paths], spec)
    assert training.shape == runtime.shape == (2, 3, *spec["resize"])
    assert float(np.abs(training - runtime).max()) == 0.0


def test_classifier_accepts_every_input_form(bundles: dict[str, Path], tmp_path: Path) -> None:
    from edgekit.preprocess import preprocess_images

    paths = _sample_photos(tmp_path)
    model = edgekit.load(bundles["cnn"])
    spec = model.manifest["preprocess"]
    pil = [Image.open(p) for p in paths]
    arrays = [np.asarray(im.convert("RGB")) for im in pil]
    batch = preprocess_images([str(p) for p in paths], spec)
    forms = [[str(p) for p in paths], paths, pil, arrays, batch]
    results = [model.predict_proba(f) for f in forms]
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-6)
    single = model.predict(str(paths[0]), top_k=2)[0]
    assert single.label in ("ellipse", "stripes") and len(single.top_k) == 2
    assert abs(sum(s for _, s in single.top_k) - 1) < 1e-6


def test_classifier_matches_torch(
    bundles: dict[str, Path], tiny_checkpoints: dict[str, Path]
) -> None:
    import torch

    from edgekit.training.checkpoint import load_checkpoint

    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    model = edgekit.load(bundles["lenet"])
    with torch.no_grad():
        logits = load_checkpoint(tiny_checkpoints["lenet"]).build()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.raw(x), logits, atol=1e-4)
    assert [p.label for p in model.predict(x)] == [str(i) for i in logits.argmax(1)]


def test_classifier_is_thread_safe(bundles: dict[str, Path]) -> None:
    model = edgekit.load(bundles["lenet"])
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((3, 1, 28, 28)).astype(np.float32) for _ in range(16)]
    serial = [model.predict_proba(x) for x in inputs]
    results: dict[int, np.ndarray] = {}

    def work(worker: int) -> None:
        for i in range(worker, len(inputs), 8):
            for _ in range(5):
                got = model.predict_proba(inputs[i])
                if i in results:
                    assert np.array_equal(results[i], got)
                results[i] = got

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[i], serial[i]) for i in range(len(inputs)))


def test_regressor_and_tabular_classifier(bundles: dict[str, Path]) -> None:
    reg = edgekit.load(bundles["linear"])
    pred = reg.predict([[25, 3], [30, 2]])
    assert pred.shape == (2,) and 60 < pred[0] < 170
    clf = edgekit.load(bundles["logistic"])
    assert [p.label for p in clf.predict([[-8], [9]])] == ["stays in", "goes out"]


# --- Generator ----------------------------------------------------------------------------------------


def _torch_greedy(bundle: Path, prompt: str, n: int) -> str:
    """The torch reference: the source checkpoint stepped one token at a time, greedily."""
    from edgekit.reference.torch_backend import TorchBackend

    manifest = json.loads((bundle / MANIFEST).read_text())
    ref = TorchBackend.from_checkpoint(manifest["source"]["checkpoint"])
    vocab = manifest["vocab"]
    state = ref.contract.zero_state(1)
    tokens = np.array([[vocab.index(c) for c in prompt]], dtype=np.int64)
    text = ""
    for _ in range(n + 1):
        out = ref.run({"tokens": tokens, **state})
        state = {p.input: out[p.output] for p in ref.contract.state}
        nxt = int(out["logits"][0, -1].argmax())
        if len(text) == n:
            break
        text += vocab[nxt]
        tokens = np.array([[nxt]], dtype=np.int64)
    return text


def test_greedy_generation_equals_torch_for_500_tokens(bundles: dict[str, Path]) -> None:
    g = edgekit.load(bundles["charlm"])
    assert g.generate("the ", 500, temperature=0) == _torch_greedy(bundles["charlm"], "the ", 500)


def test_seeded_sampling_is_reproducible(bundles: dict[str, Path]) -> None:
    g = edgekit.load(bundles["charlm"])
    a = g.generate("the ", 80, temperature=1.0, top_k=8, top_p=0.9, seed=5)
    assert a == g.generate("the ", 80, temperature=1.0, top_k=8, top_p=0.9, seed=5)
    assert a != g.generate("the ", 80, temperature=1.0, top_k=8, top_p=0.9, seed=6)
    assert "".join(g.stream("the ", 80, temperature=1.0, top_k=8, top_p=0.9, seed=5)) == a


def test_session_feed_step_state_reset(bundles: dict[str, Path]) -> None:
    g = edgekit.load(bundles["charlm"])
    expected = g.generate("the cat", 20, temperature=0)
    s = g.session()
    s.feed("the ")
    s.feed("cat")  # feeding continues from the state
    assert "".join(s.step(temperature=0) for _ in range(20)) == expected
    saved = s.state
    assert set(saved) == {"state_in.h", "state_in.c", "logits"} and saved["state_in.h"].shape == (
        2,
        1,
        24,
    )
    nxt = "".join(s.step(0) for _ in range(5))
    s.state = saved  # save, restore, continue: the same characters again
    assert "".join(s.step(0) for _ in range(5)) == nxt
    fresh = g.session()
    fresh.state = saved  # a snapshot moves between sessions
    assert "".join(fresh.step(0) for _ in range(5)) == nxt
    bare = {k: v for k, v in saved.items() if k != "logits"}
    fresh.state = bare  # recurrent state only: feed() before step()
    with pytest.raises(InputError, match="feed"):
        fresh.step()
    s.reset()
    s.feed("the cat")
    assert "".join(s.step(0) for _ in range(20)) == expected, "reset restores the zero state"


def test_sessions_never_share_state(bundles: dict[str, Path]) -> None:
    g = edgekit.load(bundles["charlm"])
    a, b = g.session(), g.session()
    a.feed("the ")
    b.feed("of ")
    assert not np.array_equal(a.state["state_in.h"], b.state["state_in.h"])
    assert "".join(a.step(0) for _ in range(10)) == g.generate("the ", 10, temperature=0)


def test_generate_batch_equals_single_streams(bundles: dict[str, Path]) -> None:
    g = edgekit.load(bundles["charlm"])
    prompts = ["the ", "a", "the cat ", "of", "in the "]
    single = [g.generate(p, 40, temperature=0) for p in prompts]
    assert g.generate_batch(prompts, 40, temperature=0) == single


def test_stop_strings(bundles: dict[str, Path]) -> None:
    g = edgekit.load(bundles["charlm"])
    full = g.generate("the ", 60, temperature=0)
    stop = full[10:12]
    cut = g.generate("the ", 60, temperature=0, stop=stop)
    assert cut == full[: full.index(stop)]
    assert "".join(g.stream("the ", 60, temperature=0, stop=stop)) == cut


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "€"}, "not in the model's vocabulary: ['€']"),
        ({"prompt": ""}, "prompt is empty"),
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"top_p": 1.5}, "top_p must be in"),
        ({"max_new_tokens": -1}, "max_new_tokens must be >= 0"),
    ],
)
def test_generation_bad_input(bundles: dict[str, Path], kwargs: dict, message: str) -> None:
    g = edgekit.load(bundles["charlm"])
    args = {"prompt": "the ", "max_new_tokens": 5, **kwargs}
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        g.generate(**args)


def test_step_before_feed(bundles: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="feed"):
        edgekit.load(bundles["charlm"]).session().step()
