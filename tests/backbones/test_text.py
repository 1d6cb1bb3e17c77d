"""The text tower: the offline all-MiniLM-L6-v2 and the tiny random text_test."""

import pytest
import torch
import torch.nn.functional as F

from vidlit.backbones.text import TextEncoder, create_text_encoder, minilm_path


def test_minilm_matches_sentence_transformers():
    """Mean-pooled, normalized MiniLM output is all-MiniLM-L6-v2's sentence embedding."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["a red square moves left", "someone opens the fridge"]
    encoder = create_text_encoder("minilm")
    with torch.no_grad():
        out = encoder.encode(texts)
    reference = sentence_transformers.SentenceTransformer(str(minilm_path()), device="cpu")
    expected = reference.encode(texts, convert_to_tensor=True)
    assert out.tokens.shape[-1] == encoder.embed_dim == 384
    torch.testing.assert_close(F.normalize(out.pooled, dim=-1), expected, atol=1e-5, rtol=0)


def test_minilm_understands_paraphrase():
    encoder = create_text_encoder("minilm")
    with torch.no_grad():
        e = F.normalize(
            encoder.encode(["a dog runs in the park", "a puppy running on grass", "tax law"]).pooled
        )
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_text_test_shapes_mask_and_padding_invariance():
    encoder = create_text_encoder("text_test", max_length=8)
    out = encoder.encode(["short", "a much longer caption that will be truncated here"])
    assert out.tokens.shape == (2, 8, 32) and out.mask.dtype == torch.bool
    assert out.mask[0].sum() < out.mask[1].sum() == 8
    encoder.eval()
    alone = encoder.encode(["short"]).pooled
    torch.testing.assert_close(encoder.encode(["short", "padding partner words"]).pooled[:1], alone)


def test_text_test_is_seeded():
    a, b = TextEncoder("text_test", seed=3), TextEncoder("text_test", seed=3)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_frozen_tower_has_no_gradients_and_stays_in_eval():
    encoder = create_text_encoder("text_test", freeze=True).train()
    assert not encoder.model.training
    out = encoder.encode(["a blue circle"])
    assert not out.tokens.requires_grad
    assert all(not p.requires_grad for p in encoder.parameters())


def test_unknown_name_names_the_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        create_text_encoder(str(tmp_path / "nope"))
    with pytest.raises(TypeError, match="list of strings"):
        create_text_encoder("text_test").tokenize("one string")
