"""Weight lookup and (monkeypatched) download; no network access."""

from __future__ import annotations

import pytest
import torch

from sindiffusion.evaluation import WEIGHTS, MissingWeightsError, fetch_weights, find_weights, weights_path


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_missing_weights_message_names_file_url_and_path(name, no_weights):
    spec = WEIGHTS[name]
    with pytest.raises(MissingWeightsError) as info:
        find_weights(name, no_weights)
    msg = str(info.value)
    assert spec.filename in msg and spec.url in msg and str(no_weights / spec.filename) in msg
    assert isinstance(info.value, RuntimeError)


def test_default_location_follows_torch_home(no_weights, tmp_path):
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert weights_path("alexnet") == expected
    with pytest.raises(MissingWeightsError, match=str(expected)):
        find_weights("alexnet")
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"x")
    assert find_weights("alexnet") == expected


def test_explicit_dir_is_the_only_place_looked_at(no_weights, tmp_path):
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / WEIGHTS["inception_v3"].filename).write_bytes(b"x")
    assert find_weights("inception_v3").parent == hub
    with pytest.raises(MissingWeightsError):
        find_weights("inception_v3", no_weights)


def test_unknown_name():
    with pytest.raises(KeyError, match="known"):
        find_weights("vgg")


def test_fetch_uses_hub_downloader_and_skips_existing(no_weights):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        torch.save({"url": url}, dst)

    got = fetch_weights(None, no_weights, downloader=fake_download, progress=False)
    assert set(got) == set(WEIGHTS)
    for name, path in got.items():
        assert path == no_weights / WEIGHTS[name].filename and path.is_file()
        assert find_weights(name, no_weights) == path
    assert sorted(c[0] for c in calls) == sorted(s.url for s in WEIGHTS.values())
    assert {c[2] for c in calls} == {"0cc3c7c2", "7be5be79"}

    fetch_weights(["alexnet"], no_weights, downloader=fake_download)
    assert len(calls) == 2  # already there: not downloaded again
    fetch_weights(["alexnet"], no_weights, downloader=fake_download, force=True)
    assert len(calls) == 3


def test_fetch_default_downloader_is_torch_hub(monkeypatch, no_weights):
    seen = []
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda url, dst, **kw: (seen.append(url), open(dst, "wb").close())
    )
    fetch_weights(["inception_v3"], weights_dir=None)
    assert seen == [WEIGHTS["inception_v3"].url]
    assert find_weights("inception_v3").is_file()
