"""The embedders on real inputs: MiniLM semantics, EfficientNet-lite0 labels on photos, open_clip shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retrieval import EmbedError, ImageEmbedder, OpenClipEmbedder, TextEmbedder, VectorStore


@pytest.fixture(scope="module")
def photos() -> dict[str, Path]:
    """Two real photos shipped with scikit-learn (a dependency of sentence-transformers)."""
    datasets = pytest.importorskip("sklearn.datasets")
    return {Path(f).stem: Path(f) for f in datasets.load_sample_images().filenames}


@pytest.fixture(scope="module")
def text_embedder() -> TextEmbedder:
    return TextEmbedder()


@pytest.fixture(scope="module")
def image_embedder() -> ImageEmbedder:
    return ImageEmbedder()


def test_minilm_ranks_the_dog_sentence_above_finance(text_embedder: TextEmbedder) -> None:
    assert text_embedder.name == "minilm-l6-v2" and text_embedder.dim == 384
    sentences = [
        "The central bank raised interest rates and bond yields climbed.",
        "A puppy chases a ball across the garden.",
        "Quarterly earnings beat analyst expectations.",
    ]
    vectors = text_embedder.embed_texts(sentences)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = text_embedder.embed_texts(["a dog playing"])[0]
    similarity = vectors @ query
    assert int(np.argmax(similarity)) == 1
    assert similarity[1] > similarity[0] + 0.2 and similarity[1] > similarity[2] + 0.2
    assert text_embedder.embed_texts([]).shape == (0, 384)
    with pytest.raises(EmbedError, match="wrap it in a list"):
        text_embedder.embed_texts("a dog")
    with pytest.raises(EmbedError, match="text only"):
        text_embedder.embed_images([])


def test_minilm_collection_is_searchable_after_reopening(tmp_path: Path, text_embedder: TextEmbedder) -> None:
    path = tmp_path / "store"
    with VectorStore(path) as store:
        store.collection("captions", text_embedder).upsert(
            ["c/1", "c/2", "c/3"],
            documents=["a golden retriever fetching a stick", "stock prices chart", "a bowl of ramen"],
        )
    with VectorStore(path) as reopened:  # the packaged embedder is rebuilt from the recorded name
        hits = reopened.query("captions", texts=["dog playing outside"], k=3)[0]
        assert hits[0]["id"] == "c/1"
        assert reopened.stats()["collections"]["captions"]["embedder"] == "minilm-l6-v2"


def test_local_sentence_transformers_folder_is_checked(tmp_path: Path) -> None:
    with pytest.raises(EmbedError, match="folder not found"):
        TextEmbedder(tmp_path / "nowhere")
    with pytest.raises(EmbedError, match="not a sentence-transformers folder"):
        TextEmbedder(tmp_path)


def test_efficientnet_labels_real_photos_sensibly(image_embedder: ImageEmbedder, photos: dict[str, Path]) -> None:
    vectors, labels = image_embedder.embed_and_classify([photos["china"], photos["flower"]], top_k=5)
    assert vectors.shape == (2, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    temple_words = {"palace", "monastery", "bell cote", "church", "castle", "pagoda", "stupa", "dome"}
    assert temple_words & {label for label, _ in labels[0]}, labels[0]
    assert "daisy" in {label for label, _ in labels[1]}, labels[1]
    for row in labels:
        probabilities = [p for _, p in row]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0 + 1e-6
    # classify() and embed_images() agree with the joint call
    assert image_embedder.classify([photos["flower"]], top_k=1)[0][0][0] == labels[1][0][0]
    np.testing.assert_allclose(image_embedder.embed_images([photos["china"]])[0], vectors[0], atol=1e-5)
    with pytest.raises(EmbedError, match="images only"):
        image_embedder.embed_texts(["a temple"])


def test_exif_orientation_is_applied(tmp_path: Path, image_embedder: ImageEmbedder, photos: dict[str, Path]) -> None:
    upright = Image.open(photos["china"]).convert("RGB")
    # stored sideways, with the EXIF tag (6: rotate 90 degrees clockwise) a camera writes to say so
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = sideways.getexif()
    exif[0x0112] = 6
    tagged = tmp_path / "sideways.png"
    sideways.save(tagged, exif=exif.tobytes())
    untagged = tmp_path / "sideways-untagged.png"
    sideways.save(untagged)
    vectors = image_embedder.embed_images([upright, tagged, untagged])
    assert float(vectors[0] @ vectors[1]) > 0.99
    assert float(vectors[0] @ vectors[2]) < float(vectors[0] @ vectors[1]) - 0.05


def test_unreadable_image_names_the_file(tmp_path: Path, image_embedder: ImageEmbedder) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(EmbedError, match=r"broken\.jpg: not a readable image"):
        image_embedder.embed_images([broken])
    with pytest.raises(EmbedError, match=r"missing\.jpg: image file not found"):
        image_embedder.embed_images([tmp_path / "missing.jpg"])


def test_open_clip_random_model_shares_one_space(tmp_path: Path, photos: dict[str, Path]) -> None:
    embedder = OpenClipEmbedder("ViT-B-32", pretrained=None)
    assert embedder.name == "open_clip:ViT-B-32:random" and embedder.dim == 512
    texts = embedder.embed_texts(["a photo of a temple", "a flower"])
    images = embedder.embed_images([photos["china"], Image.open(photos["flower"])])
    assert texts.shape == images.shape == (2, 512)
    assert texts.dtype == images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.vstack([texts, images]), axis=1), 1.0, atol=1e-5)
    with VectorStore(tmp_path / "store") as store:  # images in, text queries out, one collection
        store.collection("clip", embedder).upsert(["china", "flower"], images=list(photos.values()))
        hits = store.query("clip", texts=["a temple"], k=2)[0]
        assert {hit["id"] for hit in hits} == {"china", "flower"}


def test_open_clip_never_downloads_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(EmbedError, match="allow_download=True"):
        OpenClipEmbedder("ViT-B-32", pretrained="laion2b_s34b_b79k")
    with pytest.raises(EmbedError, match="weights file not found"):
        OpenClipEmbedder("ViT-B-32", pretrained=tmp_path / "clip.safetensors")
    with pytest.raises(EmbedError, match="allow_download=True"):
        OpenClipEmbedder("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    with pytest.raises(EmbedError, match="unknown open_clip model"):
        OpenClipEmbedder("ViT-Nope-99")
    weights = tmp_path / "my-clip.pt"
    weights.write_bytes(b"")
    assert OpenClipEmbedder("ViT-B-32", pretrained=weights).name == "open_clip:ViT-B-32:my-clip"
