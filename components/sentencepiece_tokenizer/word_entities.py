"""Words over SentencePiece pieces, in graph: which piece is each word's first, and the entities a
token classifier predicts, as character offsets into the exact text the client sent.

Word-level token classification (the way NER is trained and scored in the literature, e.g. BERT's
CoNLL recipe and BLURB): a word is a whitespace-delimited run of text, labelled at its first piece
only; the other pieces of the word carry the ignore label in training and are not read in serving.
SentencePiece marks a word's start with "▁": a word's first piece is a piece that starts with "▁" and
holds more than the mark, or a piece that follows a bare "▁" (the mark is a piece of its own before a
character that merges with nothing, such as "(" or a user symbol such as "[DATE]"). A bare "▁" is no
word's first piece.

Offsets: `SentencepieceTokenizer.tokenize_with_offsets` gives each piece's UTF-8 byte range in the
string it was given, before SentencePiece's own normalization (`nmt_nfkc_cf`, which the tokenizer
trainer sets). Serving therefore tokenizes the client's own string: the ids equal those of the
Transform's normalized text (NFKC and space runs, which that normalizer also applies), and every
offset indexes the request. A piece that starts a word also covers the whitespace before it, and
NFKC expansions (the ligature "ﬁ" is "fi") can leave a piece covering only a space; an entity's start
skips that whitespace. Byte offsets become Unicode code points at the end, as Python's `str` indexes.

Everything here is core TensorFlow ops, which the stock TF Serving model server has.
"""

from __future__ import annotations

import sentencepiece as spm
import tensorflow as tf

WORD_MARK = "▁"
IGNORE = -100
# Whitespace as RE2 knows it: ASCII \s and the Unicode separators (no-break space and the like).
_LEADING_SPACE = r"^[\s\p{Z}]+"
_TRAILING_SPACE = r"[\s\p{Z}]+$"


def word_starts(ids: tf.RaggedTensor, model_proto: bytes) -> tf.RaggedTensor:
    """True at each word's first piece, for piece ids `[batch, (pieces)]` of the model `model_proto`."""
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    marked = tf.constant([p.startswith(WORD_MARK) and p != WORD_MARK for p in pieces])
    bare_ids = [i for i, p in enumerate(pieces) if p == WORD_MARK] or [-1]
    flat = tf.cast(ids.values, tf.int64)
    starts_word = tf.gather(marked, flat)
    bare = tf.equal(flat, bare_ids[0])
    # The flat previous piece, when it is in the same row.
    rows = ids.value_rowids()
    same_row = tf.equal(rows, tf.concat([[-1], rows[:-1]], axis=0))
    previous_bare = tf.concat([[False], bare[:-1]], axis=0) & same_row
    follows_bare = previous_bare & ~bare & ~starts_word
    return ids.with_values(starts_word | follows_bare)


def _segment_ids(flags: tf.Tensor) -> tf.Tensor:
    """0, 1, ... for each run that begins at a True flag (the run index of every position; -1 before
    the first True)."""
    return tf.cumsum(tf.cast(flags, tf.int64)) - 1


def _piece_words(is_word_start: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(flat word index of each piece, whether the piece is in a word, each word's row). A piece
    belongs to the last word start at or before it in its row; a bare mark at a row's start belongs
    to none."""
    first = is_word_start.values
    piece_row = tf.cast(is_word_start.value_rowids(), tf.int64)
    word_row = tf.boolean_mask(piece_row, first)
    piece_word = _segment_ids(first)
    in_word = tf.equal(tf.gather(tf.concat([[-1], word_row], 0), piece_word + 1), piece_row)
    return piece_word, in_word, word_row


def word_labels(piece_labels: tf.RaggedTensor, is_word_start: tf.RaggedTensor) -> tf.RaggedTensor:
    """BIO piece labels made word labels: each word's first piece carries the label of the word's first
    piece that is not O (so a word whose entity starts inside it is B), every other piece IGNORE."""
    labels = tf.cast(piece_labels.values, tf.int64)
    piece_word, in_word, _ = _piece_words(is_word_start)
    words = tf.reduce_sum(tf.cast(is_word_start.values, tf.int64))
    position = tf.range(tf.size(labels, out_type=tf.int64))
    labelled = in_word & (labels > 0)
    # The first labelled piece of each word (a position past the end where there is none).
    first_labelled = tf.math.unsorted_segment_min(
        tf.boolean_mask(position, labelled), tf.boolean_mask(piece_word, labelled), words
    )
    padded = tf.concat([labels, [0]], axis=0)
    label = tf.gather(padded, tf.minimum(first_labelled, tf.size(labels, out_type=tf.int64)))
    label_at_piece = tf.gather(tf.concat([label, [IGNORE]], 0), tf.where(in_word, piece_word, words))
    return piece_labels.with_values(
        tf.where(is_word_start.values, label_at_piece, tf.constant(IGNORE, tf.int64))
    )


def decode_entities(
    texts: tf.Tensor,
    piece_starts: tf.RaggedTensor,
    piece_ends: tf.RaggedTensor,
    is_word_start: tf.RaggedTensor,
    label_ids: tf.RaggedTensor,
    label_scores: tf.RaggedTensor,
    entity_types: list[str],
) -> dict[str, tf.Tensor]:
    """The entities of each text, read from its words' first pieces with conlleval's rules.

    `piece_starts`/`piece_ends` are UTF-8 byte offsets into `texts` (`[batch]`); `label_ids` the BIO id
    predicted at each piece (0 is O; type t is B = 1 + 2t, I = 2 + 2t) and `label_scores` its
    probability, all `[batch, (pieces)]` over the same pieces. An entity starts at a word labelled B-t,
    or I-t when the word before is not of type t, and runs over the following words labelled I-t. It
    spans its words' pieces less the whitespace at either end; its score is
    the mean probability of its words' labels.

    Returns, each `[batch, max entities]` and padded past `num_entities` (`[batch]`): `entity_starts`,
    `entity_ends` (int64 code points into the text, end exclusive; -1 padding), `entity_types`
    (string; "" padding) and `entity_scores` (float32; 0 padding).
    """
    texts = tf.convert_to_tensor(texts, tf.string)
    rows = tf.shape(texts, out_type=tf.int64)[0]
    # Words: one per first piece, its end the end of its last piece.
    first = is_word_start.values
    piece_word, in_word, word_row = _piece_words(is_word_start)
    words = tf.reduce_sum(tf.cast(first, tf.int64))
    word_end = tf.math.unsorted_segment_max(
        tf.boolean_mask(tf.cast(piece_ends.values, tf.int64), in_word),
        tf.boolean_mask(piece_word, in_word),
        words,
    )
    word_start = tf.boolean_mask(tf.cast(piece_starts.values, tf.int64), first)
    word_label = tf.boolean_mask(tf.cast(label_ids.values, tf.int64), first)
    word_score = tf.boolean_mask(tf.cast(label_scores.values, tf.float32), first)

    # conlleval: I-t continues the word before only when that word is B-t or I-t of the same row.
    inside = word_label > 0
    kind = tf.where(inside, (word_label - 1) // 2, -1)
    previous_kind = tf.concat([[-1], kind[:-1]], axis=0)
    previous_row = tf.concat([[-1], word_row[:-1]], axis=0)
    continues = (
        inside
        & tf.equal(word_label % 2, 0)
        & tf.equal(previous_kind, kind)
        & tf.equal(previous_row, word_row)
    )
    begins = inside & ~continues
    entity_of_word = _segment_ids(begins)
    count = tf.reduce_sum(tf.cast(begins, tf.int64))
    member = inside & (entity_of_word >= 0)
    entity_ids = tf.boolean_mask(entity_of_word, member)
    byte_start = tf.boolean_mask(word_start, begins)
    byte_end = tf.math.unsorted_segment_max(tf.boolean_mask(word_end, member), entity_ids, count)
    score = tf.math.unsorted_segment_mean(tf.boolean_mask(word_score, member), entity_ids, count)
    row = tf.boolean_mask(word_row, begins)
    type_names = tf.gather(tf.constant(list(entity_types)), tf.boolean_mask(kind, begins))

    # Leave out the whitespace that a word's first piece, or a bare mark after its last, covers.
    covered = tf.strings.substr(tf.gather(texts, row), byte_start, byte_end - byte_start, unit="BYTE")
    no_lead = tf.strings.regex_replace(covered, _LEADING_SPACE, "")
    no_space = tf.strings.regex_replace(no_lead, _TRAILING_SPACE, "")
    byte_start += tf.cast(tf.strings.length(covered) - tf.strings.length(no_lead), tf.int64)
    byte_end -= tf.cast(tf.strings.length(no_lead) - tf.strings.length(no_space), tf.int64)

    # Bytes to code points: the number of characters that start before the byte.
    _, char_bytes = tf.strings.unicode_decode_with_offsets(texts, "UTF-8", errors="replace")
    char_bytes = char_bytes.to_tensor(default_value=tf.int64.max)  # (batch, chars), sorted per row
    per_row = tf.RaggedTensor.from_value_rowids(tf.stack([byte_start, byte_end], axis=1), row, nrows=rows)
    offsets = per_row.to_tensor(default_value=0)  # (batch, entities, 2)
    shape = tf.shape(offsets, out_type=tf.int64)
    positions = tf.searchsorted(char_bytes, tf.reshape(offsets, [rows, -1]), side="left", out_type=tf.int64)
    positions = tf.reshape(positions, shape)
    num_entities = per_row.row_lengths()
    valid = tf.sequence_mask(num_entities, shape[1])
    as_rows = lambda flat, pad: tf.RaggedTensor.from_value_rowids(flat, row, nrows=rows).to_tensor(pad)  # noqa: E731
    return {
        "entity_starts": tf.where(valid, positions[:, :, 0], -1),
        "entity_ends": tf.where(valid, positions[:, :, 1], -1),
        "entity_types": as_rows(type_names, ""),
        "entity_scores": as_rows(score, 0.0),
        "num_entities": num_entities,
    }
