"""Tokenizers: id-for-id parity with transformers on the real FLUX tokenizer files, plus units.

The reference is what diffusers runs: transformers' `CLIPTokenizer` on `tokenizer/` and
`T5TokenizerFast` on `tokenizer_2/`, both called with padding="max_length", truncation=True.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
import unicodedata
from pathlib import Path

import pytest
import transformers

from mlx_flux.tokenizers import CLIPTokenizer, T5Tokenizer, TokenizedText
from mlx_flux.tokenizers.clip import normalize as clip_normalize
from mlx_flux.tokenizers.clip import pre_tokenize as clip_pre_tokenize
from mlx_flux.weights import WeightError

DATA = Path(__file__).parent / "data" / "tokenizers"
CLIP_DIR = DATA / "clip-vit-large-patch14"
T5_DIR = DATA / "t5-v1_1"

transformers.logging.set_verbosity_error()  # no "sequence longer than 77" chatter


@pytest.fixture(scope="module")
def clip() -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(CLIP_DIR)


@pytest.fixture(scope="module")
def t5() -> T5Tokenizer:
    return T5Tokenizer.from_pretrained(T5_DIR)


@pytest.fixture(scope="module")
def ref_clip():
    return transformers.CLIPTokenizer.from_pretrained(str(CLIP_DIR))


@pytest.fixture(scope="module")
def ref_t5():
    return transformers.T5TokenizerFast.from_pretrained(str(T5_DIR))


def ref_ids(tokenizer, text: str, max_length: int) -> list[int]:
    out = tokenizer(text, padding="max_length", truncation=True, max_length=max_length)
    return out["input_ids"]


def ref_count(tokenizer, text: str) -> int:
    """Tokens the reference produces without truncation, specials included."""
    return len(tokenizer(text)["input_ids"])


LONG = "a castle on a hill at dawn, oil painting by an old master, " * 40

TRICKY = {
    "empty": "",
    "plain": "a photo of an astronaut riding a horse on the moon",
    "upper": "A PHOTO OF A CAT In The Style Of VAN GOGH",
    "punctuation": "wow!!! really?!? ... --- ((masterpiece)), [best quality]:1.2 ~~~ @#$%^&*",
    "contractions": "it's you'll we're they've I'm he'd don't IT'S YOU'LL '''s x'''s 'sx",
    "numbers": "12345 3.14159 1,000,000 2nd ½ ² ① Ⅻ ١٢٣",
    "accents": "café naïve Ångström crème brûlée São Paulo Dvořák ß ẞ",
    "greek_sigma": "ΟΔΟΣ ΣΑΣ σας Σ",
    "turkish": "İstanbul ıi I İ ǅ ǈ",
    "cjk": "日本語のテキスト 中文提示词 한국어 프롬프트 ｶﾀｶﾅ",
    "arabic": "مرحبا بالعالم، صورة قطة",
    "devanagari": "नमस्ते दुनिया किताब",
    "emoji": "👍 👍🏽 ❤️ 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 ✨🔥",
    "combining": "e\u0301 a\u0308\u0301 n\u0303 Ａ\u0301 ½\u0345 x\u20dd \u0301lead",
    "whitespace": "  two  spaces\tand\ttabs\nnew\r\nlines \u3000 ideographic \u00a0nbsp\u2003em  ",
    "unicode_spaces": "a\x85b\u2028c\u2029d\u1680e\u202ff\u205fg\x1ch\x1fi\u200bj\ufeffk",
    "leading_trailing": "   padded prompt   ",
    "control": "bell\x07 null\x00 del\x7f esc\x1b[0m",
    "html": '<div class="x">Hello &amp; <b>bold</b></div> <br/> &lt;3',
    "mojibake": "cafÃ© donâ€™t",  # ftfy would repair this; the reference does not
    "clip_specials": "<|startoftext|>a cat<|endoftext|> <|ENDOFTEXT|>dog<|endoftext|>",
    "t5_specials": "a cat</s> <pad> <unk> <extra_id_3> <extra_id_10><extra_id_99>x<extra_id_100>",
    "word_boundary": "a▁b ▁ ▁▁c",
    "fullwidth": "ＡＢＣ　ａｂｃ　１２３！",
    "ligatures": "ﬁne ﬂower ĳ ŉ ™ ℹ K",
    "long": LONG,
}


@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
def test_clip_matches_transformers(clip, ref_clip, text):
    assert clip.encode(text) == ref_ids(ref_clip, text, 77)
    assert clip.tokenize(text).num_tokens == ref_count(ref_clip, text)


@pytest.mark.parametrize("max_length", [256, 512])
@pytest.mark.parametrize("text", TRICKY.values(), ids=TRICKY.keys())
def test_t5_matches_transformers(t5, ref_t5, text, max_length):
    assert t5.encode(text, max_length=max_length) == ref_ids(ref_t5, text, max_length)
    assert t5.tokenize(text, max_length).num_tokens == ref_count(ref_t5, text)


# --- Fuzzing over a mixed alphabet ---

_ATOMS = [
    *"abcxyzXYZ0189'!?.,-_()[]<>|/ \t\n\r\v\f\x1c\x1f\x85\xa0\u2003\u3000\u2028\u200b\u200d\ufe0f\ufeff▁",
    *"éÉèñÑçÅåüÜßẞΣσςİıǅﬁＡａ１Ⅻ½²①ĳŉ™ℹK\u0301\u0308\u0327\u0345\u20dd\u093e\u0600",
    *"日本語中文한국어ｶﾞ가\u1100\u1161\u11a8مرحباदेवनागरीЖжΩ",
    *["👨‍👩‍👧", "🇫🇷", "👍🏽", "❤️", "<|endoftext|>", "<|startoftext|>", "<|EndOfText|>"],
    *["</s>", "<pad>", "<unk>", "<extra_id_3>", "<extra_id_99>", "<extra_id_", "'s", "'LL", "'re"],
    *["it's", "photo", " the", " a", "ing", "  ", "e\u0301", "▁▁"],
]


def _random_char(rng: random.Random) -> str:
    """Any character that Python's Unicode 14 database has assigned, below U+30000."""
    while True:
        cp = rng.randrange(0x30000)
        if not 0xD800 <= cp < 0xE000 and unicodedata.category(chr(cp)) != "Cn":
            return chr(cp)


def _fuzz_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(_ATOMS) if rng.random() < 0.8 else _random_char(rng) for _ in range(rng.randrange(40)))
        for _ in range(n)
    ]


def test_clip_fuzz_matches_transformers(clip, ref_clip):
    for text in _fuzz_texts(400, seed=1):
        assert clip.encode(text) == ref_ids(ref_clip, text, 77), ascii(text)


def test_t5_fuzz_matches_transformers(t5, ref_t5):
    for text in _fuzz_texts(400, seed=2):
        assert t5.encode(text, max_length=64) == ref_ids(ref_t5, text, 64), ascii(text)


# --- Every character: our stdlib Unicode handling against the reference's own tables ---


_UNIFORM_BLOCKS = ("CJK UNIFIED IDEOGRAPH-", "TANGUT IDEOGRAPH-", "HANGUL SYLLABLE ")


def _assigned_chars() -> list[str]:
    """Every assigned character, except that the ~100k plain ideographs and Hangul syllables
    (same class, no normalization) are sampled one in 16 to keep the test quick."""
    chars = []
    for cp in range(0x110000):
        ch = chr(cp)
        if unicodedata.category(ch) in ("Cn", "Co", "Cs"):
            continue
        if cp % 16 and unicodedata.name(ch, "").startswith(_UNIFORM_BLOCKS):
            continue
        chars.append(ch)
    return chars


def _chunks(chars: list[str], size: int = 256) -> list[str]:
    # Each character after a letter and before a digit, so it can join, split or attach.
    return ["".join("a" + ch + "1" for ch in chars[i : i + size]) for i in range(0, len(chars), size)]


def test_clip_normalizer_and_pre_tokenizer_match_every_character(ref_clip):
    """NFC, white space, lowercasing and \\p{L}/\\p{N} classes, from `unicodedata` + `re`."""
    backend = ref_clip.backend_tokenizer
    for text in _chunks(_assigned_chars()):
        normalized = backend.normalizer.normalize_str(text)
        assert clip_normalize(text) == normalized, ascii(text)
        ours = [piece.encode("utf-8") for piece in clip_pre_tokenize(normalized)]
        theirs = [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]
        # The reference's pieces are already byte-mapped; compare their lengths in bytes.
        assert [len(p) for p in ours] == [len(p) for p in theirs], ascii(text)


def test_clip_nfc_marks_unknown_to_the_reference(clip, ref_clip):
    """U+11D97 (Unicode 11) is not reordered before U+0308 by the reference's older NFC."""
    text = "z\u0308\U00011d97 \U00011935\U00011930"
    assert clip_normalize(text) != unicodedata.normalize("NFC", text).lower()
    assert clip.encode(text) == ref_ids(ref_clip, text, 77)


def test_t5_normalizer_and_words_match_every_character(t5, ref_t5):
    """The charsmap applied per grapheme (our UAX #29 subset) and the White_Space split."""
    backend = ref_t5.backend_tokenizer
    for text in _chunks(_assigned_chars()):
        normalized = backend.normalizer.normalize_str(text)
        assert t5.normalize(text) == normalized, ascii(text)
        theirs = [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]
        assert t5.words(text) == theirs, ascii(text)


def test_t5_grapheme_normalization_quirk(t5, ref_t5):
    # A fullwidth letter with a combining accent is replaced whole by the plain letter.
    assert t5.normalize("Ａ\u0301") == "A"
    assert t5.normalize("Ａ\u0301\u0301\u0301") == "A\u0301\u0301\u0301"  # 7 bytes: per character
    # Grapheme edges: a spacing mark joins (U+0E33), a Myanmar vowel sign does not (U+102B).
    assert t5.normalize("½\u0e33") == "1⁄2" and t5.normalize("½\u102b") == "1⁄2\u102b"
    assert t5.normalize("x\r\ny") == "x y"  # CR LF is one grapheme, normalized to one space
    for text in ["Ａ\u0301", "½\u0345", "e\u0301\u0301", "ﬁ\u0301x", "½\u0e33", "½\u102b", "x\r\ny"]:
        assert t5.encode(text, 16) == ref_ids(ref_t5, text, 16)


# --- Truncation and boundaries ---


def test_clip_boundary_at_75_content_tokens(clip, ref_clip):
    assert clip.content_ids("a") == [320]  # one token per "a"
    at = clip.tokenize(" ".join(["a"] * 75))
    assert at == TokenizedText(ids=[49406] + [320] * 75 + [49407], truncated=False, num_tokens=77)
    over = clip.tokenize(" ".join(["a"] * 76))
    assert over.ids == at.ids and over.truncated and over.num_tokens == 78
    for n in (74, 75, 76):
        text = " ".join(["a"] * n)
        assert clip.encode(text) == ref_ids(ref_clip, text, 77)


def test_clip_long_prompt_truncates_keeping_eos(clip, ref_clip):
    out = clip.tokenize(LONG)
    assert out.truncated and len(out.ids) == 77
    assert out.ids[0] == 49406 and out.ids[-1] == 49407
    assert out.num_tokens == ref_count(ref_clip, LONG) > 77


def test_clip_short_prompt_pads_with_eos(clip):
    out = clip.tokenize("a cat")
    assert out == TokenizedText(ids=[49406, 320, 2368, 49407] + [49407] * 73, truncated=False, num_tokens=4)
    assert clip.encode("") == [49406] + [49407] * 76


@pytest.mark.parametrize("max_length", [256, 512])
def test_t5_boundary_at_max_length_minus_one(t5, ref_t5, max_length):
    assert t5.content_ids("hello") == [21820]  # "▁hello" is one piece
    fits = " ".join(["hello"] * (max_length - 1))
    at = t5.tokenize(fits, max_length)
    assert at == TokenizedText(ids=[21820] * (max_length - 1) + [1], truncated=False, num_tokens=max_length)
    over = t5.tokenize(fits + " hello", max_length)
    assert over.ids == at.ids and over.truncated and over.num_tokens == max_length + 1
    for text in (fits, fits + " hello", " ".join(["hello"] * (max_length - 2))):
        assert t5.encode(text, max_length=max_length) == ref_ids(ref_t5, text, max_length)


def test_t5_long_prompt_truncates_keeping_eos(t5, ref_t5):
    text = LONG * 3
    out = t5.tokenize(text, 256)
    assert out.truncated and len(out.ids) == 256 and out.ids[-1] == 1 and 0 not in out.ids
    assert out.num_tokens == ref_count(ref_t5, text) > 512


def test_t5_pads_with_zero_and_has_no_bos(t5):
    assert t5.encode("", max_length=4) == [1, 0, 0, 0]
    assert t5.encode("hello", max_length=4) == [21820, 1, 0, 0]


def test_other_max_lengths_match_transformers(clip, ref_clip, t5, ref_t5):
    text = TRICKY["plain"]
    for n in (3, 10, 100):
        assert clip.encode(text, max_length=n) == ref_ids(ref_clip, text, n)
        assert t5.encode(text, max_length=n) == ref_ids(ref_t5, text, n)
    assert t5.encode(text, max_length=2) == ref_ids(ref_t5, text, 2)


# --- Special tokens typed in a prompt ---


def test_literal_special_tokens(clip, t5):
    assert clip.content_ids("<|endoftext|>") == [49407]
    assert clip.content_ids("<|StartOfText|>") == [49406]  # matched after lowercasing
    assert t5.content_ids("</s><pad><unk>") == [1, 0, 2]
    assert t5.content_ids("<extra_id_0><extra_id_3><extra_id_10><extra_id_99>") == [32099, 32096, 32089, 32000]
    assert 1 not in t5.content_ids("<S>") and 32096 not in t5.content_ids("<EXTRA_ID_3>")  # case matters


# --- Interface and loading ---


def test_interface_types(clip, t5):
    out = clip.tokenize("a cat")
    assert isinstance(out, TokenizedText) and all(type(i) is int for i in out.ids)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.truncated = True
    assert clip.encode("a cat") == out.ids
    assert len(clip.encode("a cat")) == 77 and clip.max_length == 77
    assert len(t5.encode("a cat")) == 512 and t5.max_length == 512
    assert t5.encode("a cat", max_length=256) == t5.tokenize("a cat", 256).ids
    assert CLIPTokenizer.from_pretrained(str(CLIP_DIR)).encode("x") == clip.encode("x")  # str path


def test_loading_is_fast():
    # Generous bound: this guards against an accidental quadratic load, not machine speed.
    for cls, folder in ((CLIPTokenizer, CLIP_DIR), (T5Tokenizer, T5_DIR)):
        start = time.perf_counter()
        cls.from_pretrained(folder)
        assert time.perf_counter() - start < 2.0


def test_load_without_config_files(tmp_path, clip, t5):
    """Only the vocabulary files: the defaults are the FLUX ones."""
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(CLIP_DIR / name, tmp_path / name)
    shutil.copy(T5_DIR / "spiece.model", tmp_path / "spiece.model")
    bare_clip, bare_t5 = CLIPTokenizer.from_pretrained(tmp_path), T5Tokenizer.from_pretrained(tmp_path)
    for text in (TRICKY["clip_specials"], TRICKY["t5_specials"], TRICKY["combining"]):
        assert bare_clip.encode(text) == clip.encode(text)
        assert bare_t5.encode(text) == t5.encode(text)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "name, content",
    [
        ("vocab.json", None),
        ("merges.txt", None),
        ("vocab.json", b"{not json"),
        ("vocab.json", b'["a list"]'),
        ("vocab.json", b'{"a": 0}'),  # no special tokens
        ("merges.txt", b"#version: 0.2\na b c\n"),
        ("merges.txt", b"\xff\xfe\x00"),
        ("tokenizer_config.json", b"[1, 2]"),
    ],
)
def test_clip_bad_files_raise_weight_error(tmp_path, name, content):
    folder = _copy(CLIP_DIR, tmp_path / "tokenizer")
    if content is None:
        (folder / name).unlink()
    else:
        (folder / name).write_bytes(content)
    with pytest.raises(WeightError, match=name.replace(".", r"\.")) as info:
        CLIPTokenizer.from_pretrained(folder)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name, content",
    [
        ("spiece.model", None),
        ("spiece.model", b""),
        ("spiece.model", b"this is not a model\n" * 50),
        ("spiece.model", "truncated"),
        ("tokenizer_config.json", b"{broken"),
    ],
)
def test_t5_bad_files_raise_weight_error(tmp_path, name, content):
    folder = _copy(T5_DIR, tmp_path / "tokenizer_2")
    if content is None:
        (folder / name).unlink()
    elif content == "truncated":
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    else:
        (folder / name).write_bytes(content)
    with pytest.raises(WeightError, match=name.replace(".", r"\.")) as info:
        T5Tokenizer.from_pretrained(folder)
    assert "\n" not in str(info.value)


def test_missing_folder_raises_weight_error(tmp_path):
    with pytest.raises(WeightError, match="vocab.json"):
        CLIPTokenizer.from_pretrained(tmp_path / "nope")
    with pytest.raises(WeightError, match="spiece.model"):
        T5Tokenizer.from_pretrained(tmp_path / "nope")


def test_reference_pipeline_is_the_one_we_reproduce(ref_clip, ref_t5):
    """transformers 5 has no ftfy step: if this changes, our cleanup must change too."""
    assert repr(ref_clip.backend_tokenizer.normalizer).startswith("Sequence(normalizers=[NFC(), Replace(")
    assert "Lowercase()" in repr(ref_clip.backend_tokenizer.normalizer)
    assert "WhitespaceSplit()" in repr(ref_t5.backend_tokenizer.pre_tokenizer)
    assert clip_normalize("cafÃ©") == "cafã©"  # mojibake stays mojibake, as in the reference
