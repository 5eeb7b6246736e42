"""A broad corpus of hostile Kafka values, by class, each with the verdict we intend.

Every ``expected`` list is written by hand from the contract's documented rules (docs/CONTRACT.md, and
the rules spelled out in ``lakehouse.ingest.contract``), never by calling ``violations``:
the corpus test compares the Python verdict, the Spark verdict and this one. ``hostile_corpus`` holds sales
(no ``type_evenement``: what the Bronze stream's tests send), ``correction_corpus`` returns and
cancellations and the event type itself.

Case names are ``class/member``. Times are relative to ``reference``: the Kafka timestamp the records are
judged against (microseconds zero).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from lakehouse.ingest.contract import ContractLimits
from lakehouse.ingest.simulator import SalesSimulator

LIMITS = ContractLimits()
MISSING = object()  # a field left out of the object
REQUIRED = ("vente_id", "client_id", "produit_id", "timestamp", "quantite", "montant", "client_nom", "produit_nom",
            "categorie", "pays", "segment")
OPTIONAL = ("prix_unitaire", "ville", "canal", "devise", "contract_version")
ALL_MISSING = [f"missing_field:{f}" for f in REQUIRED]


@dataclass(frozen=True)
class Case:
    name: str
    value: bytes | None
    expected: list[str]

    @property
    def klass(self) -> str:
        return self.name.split("/", 1)[0]


def compose(base: dict[str, str], extra: tuple[tuple[str, str], ...] = (),
            fields: dict[str, object] | None = None) -> str:
    """An object's text: ``base`` (field -> raw JSON text) with some fields' raw JSON replaced (``MISSING``
    leaves one out), fields not in ``base`` added after its own, then raw ``"key":value`` pairs."""
    parts = [f'"{name}":{raw}' for name, raw in {**base, **(fields or {})}.items() if raw is not MISSING]
    parts += [f"{k}:{v}" for k, v in extra]
    return "{" + ",".join(parts) + "}"


def iso(t: datetime, offset_minutes: int = 0, digits: int = 6, zulu: bool = False) -> str:
    """``t`` written as a contract timestamp in the given offset, with ``digits`` fraction digits."""
    local = t.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{local.microsecond:06d}"[:digits]
    if zulu:
        return text + "Z"
    sign = "-" if offset_minutes < 0 else "+"
    return text + f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"


def hostile_corpus(reference: datetime) -> list[Case]:
    assert reference.tzinfo is not None and reference.microsecond == 0
    event_time = reference - timedelta(minutes=1)
    base = _sale_fields(event_time)
    cases: list[Case] = []

    def add(name: str, value: bytes | str | None, expected: list[str]) -> None:
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogatepass")
        cases.append(Case(name, value, list(expected)))

    def sale(extra: tuple[tuple[str, str], ...] = (), **fields: object) -> str:
        """The base sale's text with some fields' raw JSON replaced (``MISSING`` leaves one out) and raw
        ``"key":value`` pairs added at the end."""
        return compose(base, extra, fields)

    def field(klass: str, name: str, raw: str, expected: list[str], label: str | None = None) -> None:
        label = label or (raw if len(raw) <= 40 else f"{raw[:24]}...({len(raw)} chars)")
        add(f"{klass}/{name}={label}", sale(**{name: raw}), expected)

    S = sale()
    SB = S.encode("utf-8")
    marker = sale(client_nom='"@@"').encode()
    before, after = marker.split(b"@@")

    def in_text(raw: bytes) -> bytes:
        """The sale with ``raw`` bytes as client_nom's content."""
        return before + raw + after

    # --- valid -----------------------------------------------------------------------------------------
    add("valid/base_sale", S, [])
    add("valid/escaped_key_names", S.replace('"vente_id"', '"\\u0076ente_id"').replace('"pays"', '"p\\u0061ys"'), [])
    add("valid/extra_fields", sale(extra=(('"commentaire"', '"ok"'), ('"n"', "1"), ('"b"', "true"), ('"z"', "null"))),
        [])
    add("valid/fields_reversed", "{" + ",".join(f'"{k}":{v}' for k, v in reversed(list(base.items()))) + "}", [])
    add("valid/required_only", sale(**{f: MISSING for f in OPTIONAL}), [])

    # --- encodings -------------------------------------------------------------------------------------
    bad_utf8 = {
        "lone_continuation_80": b"\x80", "lone_continuation_bf": b"\xbf", "two_continuations": b"\x80\x80",
        "continuation_after_ascii": b"abc\xa9", "start_c3_then_ascii": b"\xc3a", "start_e2_then_ascii": b"\xe2ab",
        "overlong_c0_80": b"\xc0\x80", "overlong_c1_bf": b"\xc1\xbf", "overlong_e0_80_af": b"\xe0\x80\xaf",
        "overlong_e0_9f_bf": b"\xe0\x9f\xbf", "overlong_f0_80_80_af": b"\xf0\x80\x80\xaf",
        "overlong_f0_8f_bf_bf": b"\xf0\x8f\xbf\xbf", "surrogate_ed_a0_80": b"\xed\xa0\x80",
        "surrogate_ed_bf_bf": b"\xed\xbf\xbf", "cesu8_pair": b"\xed\xa0\xbd\xed\xb8\x80",
        "above_10ffff_f4_90_80_80": b"\xf4\x90\x80\x80", "f5_lead": b"\xf5\x80\x80\x80",
        "f7_bf_bf_bf": b"\xf7\xbf\xbf\xbf",
        "five_byte_f8": b"\xf8\x88\x80\x80\x80", "six_byte_fc": b"\xfc\x84\x80\x80\x80\x80", "byte_fe": b"\xfe",
        "byte_ff": b"\xff", "truncated_2_of_3": b"\xe2\x82", "truncated_1_of_2": b"\xc3",
        "truncated_3_of_4": b"\xf0\x9f\x98", "truncated_then_valid": b"\xf0\x9f\xc3\xa9",
        "latin1_e_acute": "Zoé".encode("latin-1"),
    }
    for name, raw in bad_utf8.items():
        add(f"encoding/in_text_{name}", in_text(raw), ["non_utf8"])
    add("encoding/truncated_at_end", SB + b"\xf0\x9f\x98", ["non_utf8"])
    add("encoding/invalid_after_object", SB + b"\xff", ["non_utf8"])
    add("encoding/invalid_in_key", SB[:-1] + b',"k\xc0\xafey":1}', ["non_utf8"])
    add("encoding/invalid_not_json", b"\xff\xfe\xfd", ["non_utf8"])
    add("encoding/invalid_in_number_position", sale(quantite="\x01").encode().replace(b"\x01", b"\x80"), ["non_utf8"])
    add("encoding/utf16le_bom", b"\xff\xfe" + S.encode("utf-16-le"), ["non_utf8"])
    add("encoding/utf16be_bom", b"\xfe\xff" + S.encode("utf-16-be"), ["non_utf8"])
    add("encoding/utf16le_no_bom_non_ascii", '{"client_nom":"Zoé"}'.encode("utf-16-le"), ["non_utf8"])
    # ASCII in UTF-16 / UTF-32 without BOM is valid UTF-8 full of NUL bytes: not JSON.
    add("encoding/utf16le_no_bom_ascii", '{"a":1}'.encode("utf-16-le"), ["not_json"])
    add("encoding/utf16be_no_bom_ascii", '{"a":1}'.encode("utf-16-be"), ["not_json"])
    add("encoding/utf32le_ascii", '{"a":1}'.encode("utf-32-le"), ["not_json"])
    add("encoding/bom_at_start", b"\xef\xbb\xbf" + SB, ["not_json"])
    add("encoding/bom_after_space", b" \xef\xbb\xbf" + SB, ["not_json"])
    add("encoding/bom_in_text", in_text(b"\xef\xbb\xbfZo\xc3\xa9"), [])
    valid_utf8 = {"two_byte_e_acute": "é", "three_byte_euro": "€", "four_byte_emoji": "😀",
                  "max_u10ffff": "\U0010ffff",
                  "noncharacter_fffe": "\ufffe", "noncharacter_ffff": "\uffff", "cjk": "日本語",
                  "last_before_surrogates_d7ff": "\ud7ff", "first_after_surrogates_e000": "\ue000"}
    for name, ch in valid_utf8.items():
        add(f"encoding/valid_{name}", in_text(ch.encode("utf-8")), [])

    # --- sizes -----------------------------------------------------------------------------------------
    mx = LIMITS.max_event_bytes

    def padded(total: int, unit: str = "x") -> bytes:
        head = sale(extra=(('"pad"', '""'),)).encode()
        room = total - len(head)
        count, rest = divmod(room, len(unit.encode()))
        value = sale(extra=(('"pad"', '"' + unit * count + "x" * rest + '"'),)).encode()
        assert len(value) == total
        return value

    add("size/none", None, ["empty"])
    add("size/zero_bytes", b"", ["empty"])
    add("size/one_space", b" ", ["not_json"])
    add("size/one_newline", b"\n", ["not_json"])
    add("size/one_nul", b"\x00", ["not_json"])
    add("size/exactly_max", padded(mx), [])
    add("size/exactly_max_multibyte", padded(mx, "é"), [])
    add("size/exactly_max_emoji", padded(mx, "😀"), [])
    add("size/max_plus_1", padded(mx + 1), ["oversized"])
    add("size/max_plus_1_multibyte", padded(mx + 1, "€"), ["oversized"])
    add("size/ten_times_max", padded(10 * mx), ["oversized"])
    add("size/max_plus_1_garbage", b"x" * (mx + 1), ["oversized"])
    add("size/max_plus_1_invalid_utf8", b"\xff" * (mx + 1), ["oversized"])
    add("size/max_plus_1_long_number", b"1" * (mx + 1), ["oversized"])
    add("size/exactly_max_garbage", b"x" * mx, ["not_json"])
    add("size/exactly_max_invalid_utf8", padded(mx)[:-3] + b'\xff"}', ["non_utf8"])
    add("size/exactly_max_spaces_after", SB + b" " * (mx - len(SB)), [])
    add("size/max_plus_1_spaces_after", SB + b" " * (mx + 1 - len(SB)), ["oversized"])

    # --- JSON: trailing data ---------------------------------------------------------------------------
    trailing = {"letter": "x", "close_brace": "}", "close_bracket": "]", "comma": ",", "space_number": " 1",
                "null": "null", "nul_byte": "\x00", "u2028": "\u2028", "u2029": "\u2029", "vt_0b": "\x0b",
                "ff_0c": "\x0c", "nbsp": "\u00a0", "nel_0085": "\u0085", "ideographic_space": "\u3000",
                "bom": "\ufeff", "second_object": S, "ndjson_second_object": "\n" + S, "open_brace": "{",
                "open_bracket": "[", "quote": '"', "line_comment": "//c", "block_comment": "/* c */",
                "semicolon": ";", "array": "[1]", "empty_object": "{}", "backslash": "\\", "string": ' "x"'}
    for name, tail in trailing.items():
        add(f"json/trailing_{name}", S + tail, ["trailing_data"])
    add("json/two_empty_objects", "{}{}", ["trailing_data"])
    add("json/object_space_letter", '{"a":1} x', ["trailing_data"])
    add("json/trailing_after_duplicate_keys", '{"a":1,"a":2} x', ["trailing_data"])
    add("json/trailing_after_bad_first_object", '{"a":1,} x', ["not_json"])
    add("json/trailing_after_nan", '{"a":NaN} x', ["not_json"])
    add("json/trailing_after_lone_surrogate", '{"a":"\\ud800"} x', ["not_json"])
    add("json/trailing_nested_second", S + '{"a":{}}', ["trailing_data"])
    # --- JSON: syntax -----------------------------------------------------------------------------------
    add("json/trailing_comma_in_sale", S[:-1] + ",}", ["not_json"])
    add("json/trailing_comma_small", '{"a":1,}', ["not_json"])
    add("json/only_comma", "{,}", ["not_json"])
    add("json/leading_comma", '{,"a":1}', ["not_json"])
    add("json/double_comma", S.replace(",", ",,", 1), ["not_json"])
    add("json/missing_comma", S.replace(",", " ", 1), ["not_json"])
    add("json/single_quoted_keys", S.replace('"vente_id"', "'vente_id'"), ["not_json"])
    add("json/single_quoted_value", sale(segment="'B2C'"), ["not_json"])
    add("json/single_quoted_all", S.replace('"', "'"), ["not_json"])
    add("json/block_comment_inside", S[:-1] + "/* c */}", ["not_json"])
    add("json/line_comment_inside", S[:-1] + "// c\n}", ["not_json"])
    add("json/hash_comment_inside", S[:-1] + "# c\n}", ["not_json"])
    add("json/line_comment_before", "// c\n" + S, ["not_json"])
    add("json/block_comment_before", "/* c */" + S, ["not_json"])
    add("json/missing_colon", '{"a" 1}', ["not_json"])
    add("json/missing_value", '{"a":}', ["not_json"])
    add("json/missing_key", "{:1}", ["not_json"])
    add("json/key_only", '{"a"}', ["not_json"])
    add("json/number_key", "{1:2}", ["not_json"])
    add("json/unquoted_key", S.replace('"vente_id"', "vente_id"), ["not_json"])
    add("json/literal_key", "{true:1}", ["not_json"])
    add("json/unclosed_object", S[:-1], ["not_json"])
    add("json/open_brace_only", "{", ["not_json"])
    add("json/close_brace_only", "}", ["not_json"])
    add("json/brace_then_bracket", "{]", ["not_json"])
    add("json/bracket_before_close", '{"a":1]}', ["not_json"])
    add("json/unterminated_string", '{"a":"x}', ["not_json"])
    add("json/unterminated_key", '{"a:1}', ["not_json"])
    add("json/colon_in_place_of_comma", '{"a":1:"b":2}', ["not_json"])
    add("json/equals_for_colon", '{"a"=1}', ["not_json"])
    add("json/python_literals", sale(extra=(('"b"', "True"),)), ["not_json"])
    add("json/undefined", sale(extra=(('"u"', "undefined"),)), ["not_json"])
    add("json/truncated_literal", sale(extra=(('"b"', "tru"),)), ["not_json"])
    add("json/literal_glued", sale(extra=(('"b"', "truex"),)), ["not_json"])
    add("json/number_glued", sale(quantite="1x"), ["not_json"])
    add("json/uppercase_literal", sale(extra=(('"b"', "TRUE"),)), ["not_json"])
    add("json/truncated_half", S[: len(S) // 2], ["not_json"])
    # --- JSON: NaN and infinities -----------------------------------------------------------------------
    for name, lit in {"nan": "NaN", "infinity": "Infinity", "minus_infinity": "-Infinity", "plus_infinity": "+Infinity",
                      "lower_nan": "nan", "inf": "inf"}.items():
        add(f"json/montant_{name}", sale(montant=lit), ["not_json"])
        add(f"json/extra_{name}", sale(extra=(('"x"', lit),)), ["not_json"])
    add("json/root_nan", "NaN", ["not_json"])
    add("json/root_infinity", "Infinity", ["not_json"])
    add("json/root_minus_infinity", "-Infinity", ["not_json"])
    # --- JSON: number syntax ----------------------------------------------------------------------------
    bad_numbers = {"leading_zero": "01", "leading_zero_decimal": "012.5", "double_zero": "00",
                   "minus_leading_zero": "-01",
                   "plus_sign": "+1", "leading_dot": ".5", "trailing_dot": "1.", "dot_exponent": "1.e2",
                   "minus_only": "-", "double_minus": "--1", "exponent_no_digits": "1e", "exponent_sign_only": "1e+",
                   "hex": "0x10", "underscore": "1_000", "comma_decimal": "1,5", "two_dots": "1.2.3",
                   "space_inside": "1 2", "arabic_indic_digit": "\u0661", "fullwidth_digit": "\uff11",
                   "minus_dot": "-.5", "exponent_dot": "1e2.5"}
    for name, lit in bad_numbers.items():
        add(f"json/quantite_{name}", sale(quantite=lit), ["not_json"])
    # --- JSON: long numbers (bad_number is judged on the text, before the parse) -------------------------
    n100, n101 = "1" * 100, "1" * 101
    add("json/quantite_100_digits", sale(quantite=n100), ["wrong_type:quantite"])
    add("json/montant_100_digits", sale(montant=n100), ["bad_amount:montant"])
    add("json/montant_100_chars_decimal", sale(montant="0." + "0" * 97 + "1"), ["bad_amount:montant"])
    add("json/montant_100_chars_negative", sale(montant="-" + "1" * 99), ["bad_amount:montant"])
    add("json/extra_100_digits", sale(extra=(('"n"', n100),)), [])
    add("json/two_100_digit_numbers", sale(extra=(('"n"', n100), ('"m"', n100))), [])
    add("json/quantite_101_digits", sale(quantite=n101), ["bad_number"])
    add("json/montant_101_chars_decimal", sale(montant="0." + "0" * 98 + "1"), ["bad_number"])
    add("json/montant_101_chars_exponent", sale(montant="1" * 50 + "e" + "1" * 50), ["bad_number"])
    add("json/extra_101_digits", sale(extra=(('"n"', n101),)), ["bad_number"])
    add("json/root_101_digits", n101, ["bad_number"])
    add("json/root_100_digits", n100, ["not_object"])
    add("json/101_digits_in_nested", sale(extra=(('"n"', "[" + n101 + "]"),)), ["bad_number"])
    add("json/101_digits_in_garbage", "vente " + n101, ["bad_number"])
    add("json/101_digits_in_trailing", S + " " + n101, ["bad_number"])
    add("json/101_digits_in_string", sale(extra=(('"n"', '"' + n101 + '"'),)), [])
    add("json/101_digits_in_key", sale(extra=(('"' + n101 + '"', "1"),)), [])
    add("json/101_number_chars_not_a_number", sale(extra=(('"n"', "-" * 101),)), ["bad_number"])
    add("json/101_e_letters", "e" * 101, ["bad_number"])
    # --- JSON: duplicate keys ---------------------------------------------------------------------------
    add("json/dup_vente_id_same_value", sale(extra=(('"vente_id"', base["vente_id"]),)), ["duplicate_key"])
    add("json/dup_vente_id_other_value", sale(extra=(('"vente_id"', '"autre"'),)), ["duplicate_key"])
    add("json/dup_escaped_equal_a", '{"a":1,"\\u0061":2}', ["duplicate_key"])
    add("json/dup_escaped_equal_in_sale", sale(extra=(('"\\u0076ente_id"', '"x"'),)), ["duplicate_key"])
    add("json/dup_escaped_slash", sale(extra=(('"a/b"', "1"), ('"a\\/b"', "2"))), ["duplicate_key"])
    add("json/dup_surrogate_pair_vs_raw", sale(extra=(('"\\ud83d\\ude00"', "1"), ('"😀"', "2"))), ["duplicate_key"])
    add("json/dup_empty_key", sale(extra=(('""', "1"), ('""', "2"))), ["duplicate_key"])
    add("json/dup_null_values", sale(extra=(('"x"', "null"), ('"x"', "null"))), ["duplicate_key"])
    add("json/dup_in_small_object", '{"a":1,"a":1}', ["duplicate_key"])
    add("json/dup_three_times", '{"a":1,"b":2,"a":3,"a":4}', ["duplicate_key"])
    add("json/dup_with_missing_fields", '{"vente_id":"a","vente_id":"b"}', ["duplicate_key"])
    add("json/dup_montant_bad_values", sale(extra=(('"montant"', '"x"'),)), ["duplicate_key"])
    add("json/not_dup_case", sale(extra=(('"Vente_id"', '"x"'),)), [])
    add("json/not_dup_nfc_vs_nfd", sale(extra=(('"é"', "1"), ('"e\u0301"', "2"))), [])
    add("json/not_dup_trailing_space", sale(extra=(('"vente_id "', "1"),)), [])
    # --- JSON: nesting ----------------------------------------------------------------------------------
    add("json/nested_object_depth1", sale(extra=(('"meta"', '{"x":1}'),)), ["nested_value"])
    add("json/nested_empty_object", sale(extra=(('"meta"', "{}"),)), ["nested_value"])
    add("json/nested_array_depth1", sale(extra=(('"tags"', '["a","b"]'),)), ["nested_value"])
    add("json/nested_empty_array", sale(extra=(('"tags"', "[]"),)), ["nested_value"])
    add("json/nested_in_montant", sale(montant='{"value":12.5}'), ["nested_value"])
    add("json/nested_in_quantite", sale(quantite="[1]"), ["nested_value"])
    add("json/nested_first_field", '{"meta":{},' + S[1:], ["nested_value"])
    add("json/nested_unbalanced", '{"a":[', ["nested_value"])
    add("json/nested_then_invalid", '{"a":{"b":NaN}}', ["nested_value"])
    add("json/nested_duplicate_keys", '{"a":{},"a":{}}', ["nested_value"])
    add("json/nested_lone_surrogate", '{"a":["\\ud800"]}', ["nested_value"])
    add("json/nested_depth_10_objects", '{"a":' * 10 + "1" + "}" * 10, ["nested_value"])
    add("json/nested_depth_1000_arrays", sale(extra=(('"deep"', "[" * 1000 + "]" * 1000),)), ["nested_value"])
    add("json/nested_depth_10000_arrays", sale(extra=(('"deep"', "[" * 10000 + "]" * 10000),)), ["nested_value"])
    add("json/nested_depth_10000_objects", '{"a":' * 10000 + "1" + "}" * 10000, ["nested_value"])
    add("json/nested_depth_10000_unclosed", '{"a":' + "[" * 10000, ["nested_value"])
    # --- JSON: not an object ----------------------------------------------------------------------------
    roots = {"empty_array": "[]", "array_of_sale": "[" + S + "]", "array_of_numbers": "[1,2]",
             "unclosed_array": "[", "spaced_array": "  [ ]", "array_garbage": "[garbage",
             "deep_array_10000": "[" * 10000 + "]" * 10000, "integer": "1", "negative_decimal": "-1.5",
             "string": '"texte"', "true": "true", "false": "false", "null": "null", "exponent": "1e400",
             "spaced_integer": "\n 42 \t", "string_of_json": json.dumps(S), "minus_zero": "-0",
             "escaped_string": r'"a\"\\"', "exponent_signed": "-1.5E+3"}
    for name, text in roots.items():
        add(f"json/root_{name}", text, ["not_object"])
    # Not one JSON scalar: whatever follows a scalar counts, glued or not.
    for name, text in {"number_space_number": "1 2", "two_strings": '"a" "b"', "string_then_garbage": '"a"x',
                       "integer_glued_letter": "1x", "literal_glued_letter": "truex", "null_glued_letter": "nullx",
                       "integer_then_brace": "1}", "integer_then_comma": "1,", "decimal_then_dot": "1.5.5",
                       "integer_then_u2028": "1\u2028", "integer_then_nul": "1\x00", "string_then_brace": '"a"}',
                       "false_then_digit": "false1", "integer_then_object": "1" + S, "bare_s": "s",
                       "string_then_object": '"a"' + S, "null_then_space_x": "null x"}.items():
        add(f"json/root_{name}", text, ["not_json"])
    for name, text in {"nul": "nul", "tru": "tru", "bare_word": "vente", "unterminated_string": '"abc',
                       "spaces_only": "   ", "root_lone_surrogate": '"\\ud800"', "root_raw_control": '"a\x01"',
                       "colon": ":", "comma": ",", "csv": "a,b,c", "xml": "<vente/>"}.items():
        add(f"json/root_{name}", text, ["not_json"])
    # --- JSON: whitespace ------------------------------------------------------------------------------
    add("json/ws_pretty_printed", json.dumps(json.loads(S), indent=2, ensure_ascii=False), [])
    add("json/ws_crlf_tabs", "{\r\n\t" + ",\r\n\t".join(f'"{k}" :\t{v}' for k, v in base.items()) + "\r\n}", [])
    add("json/ws_leading_all_four", " \t\r\n" + S, [])
    add("json/ws_trailing_all_four", S + " \t\r\n", [])
    add("json/ws_inside_braces", "{ \n" + S[1:-1] + "\n }", [])
    for name, ch in {"vt_0b": "\x0b", "ff_0c": "\x0c", "nbsp": "\u00a0", "u2028": "\u2028", "nul": "\x00",
                     "nel_0085": "\u0085", "ideographic_space": "\u3000"}.items():
        add(f"json/ws_leading_{name}", ch + S, ["not_json"])
        add(f"json/ws_between_tokens_{name}", S.replace(",", "," + ch, 1), ["not_json"])
    # --- JSON: control characters ----------------------------------------------------------------------
    raw_controls = {"nul": "\x00", "soh_01": "\x01", "tab": "\t", "newline": "\n", "cr": "\r", "us_1f": "\x1f"}
    for name, ch in raw_controls.items():
        add(f"json/raw_control_in_text_{name}", sale(client_nom=f'"a{ch}b"'), ["not_json"])
    add("json/raw_control_in_key", sale(extra=(('"a\x01"', "1"),)), ["not_json"])
    add("json/raw_control_in_extra_value", sale(extra=(('"a"', '"\x01"'),)), ["not_json"])
    add("json/raw_newline_in_timestamp", sale(timestamp=base["timestamp"][:-1] + '\n"'), ["not_json"])
    add("json/escaped_control_in_extra_key", sale(extra=(('"a\\u0001"', "1"),)), [])
    add("json/escaped_control_in_extra_value", sale(extra=(('"a"', '"\\u0000\\n"'),)), [])
    # --- JSON: surrogates -------------------------------------------------------------------------------
    add("json/lone_high_surrogate", sale(client_nom='"a\\ud800b"'), ["not_json"])
    add("json/lone_low_surrogate", sale(client_nom='"a\\udc00b"'), ["not_json"])
    add("json/reversed_pair", sale(client_nom='"\\ude00\\ud83d"'), ["not_json"])
    add("json/high_at_end", sale(client_nom='"abc\\ud83d"'), ["not_json"])
    add("json/high_then_bmp_escape", sale(client_nom='"\\ud83d\\u0041"'), ["not_json"])
    add("json/two_highs", sale(client_nom='"\\ud83d\\ud83d"'), ["not_json"])
    add("json/lone_surrogate_in_key", sale(extra=(('"\\udfff"', "1"),)), ["not_json"])
    add("json/lone_surrogate_in_extra_value", sale(extra=(('"x"', '"\\ud800"'),)), ["not_json"])
    add("json/lone_surrogate_in_id", sale(vente_id='"\\udbff"'), ["not_json"])
    add("json/valid_pair_emoji", sale(client_nom='"\\ud83d\\ude00"'), [])
    add("json/valid_pair_max", sale(client_nom='"\\udbff\\udfff"'), [])
    add("json/valid_pair_uppercase_hex", sale(client_nom='"\\uD83D\\uDE00"'), [])
    add("json/escaped_backslash_then_u", sale(client_nom='"\\\\ud800"'), [])
    # --- JSON: escapes, quotes, backslashes, braces in strings -----------------------------------------
    for name, raw in {"escaped_backslash": r'"a\\b"', "escaped_quote": r'"a\"b"', "backslash_quote": r'"\\\""',
                      "ends_with_backslash": r'"abc\\"', "two_backslashes": r'"\\\\"', "quote_brace": r'"\"}"',
                      "escaped_slash": r'"a\/b"', "all_short_escapes": r'"\"\\\/\b\f"', "braces": '"{[}]"',
                      "close_brace": '"}"', "open_brace": '"{"', "json_in_string": json.dumps('{"nested":[1]}'),
                      "quote_colon_comma": r'"\",\"x\":{"', "unicode_escape_quote": r'"\u0022"',
                      "unicode_escape_backslash": r'"\u005c"', "raw_u2028": '"a\u2028b"'}.items():
        expected = ["bad_text:client_nom"] if name == "all_short_escapes" else []  # \b and \f are controls
        add(f"json/string_{name}", sale(client_nom=raw), expected)
    add("json/key_with_escaped_quote", sale(extra=((r'"a\"b"', "1"),)), [])
    add("json/key_with_braces", sale(extra=(('"{["', '"]}"'),)), [])
    add("json/empty_key", sale(extra=(('""', "1"),)), [])
    for name, raw in {"x_escape": r'"\x41"', "upper_u": r'"\U0041"', "short_u": r'"\u12"', "bell_a": r'"\a"',
                      "single_quote": r'"\'"', "bad_hex": r'"\u00G0"', "backslash_space": r'"\ "'}.items():
        add(f"json/invalid_escape_{name}", sale(client_nom=raw), ["not_json"])
    add("json/empty_object", "{}", ALL_MISSING)
    add("json/spaced_empty_object", " { } ", ALL_MISSING)
    add("json/small_object", '{"a":1}', ALL_MISSING)

    # --- quantite --------------------------------------------------------------------------------------
    mq = LIMITS.max_quantite
    for raw, expected in [("0", ["bad_quantity"]), ("1", []), ("2", []), (str(mq), []), (str(mq + 1), ["bad_quantity"]),
                          ("2147483647", ["bad_quantity"]), ("2147483648", ["bad_quantity"]),
                          ("9223372036854775807", ["bad_quantity"]), ("9223372036854775808", ["wrong_type:quantite"]),
                          ("-9223372036854775808", ["bad_quantity"]), ("-9223372036854775809", ["wrong_type:quantite"]),
                          ("18446744073709551616", ["wrong_type:quantite"]), ("1" + "0" * 38, ["wrong_type:quantite"]),
                          ("-1", ["bad_quantity"]), ("-0", ["bad_quantity"]), ("-100000", ["bad_quantity"]),
                          ("1.0", ["wrong_type:quantite"]), ("1.5", ["wrong_type:quantite"]),
                          ("0.5", ["wrong_type:quantite"]), ("1e0", ["wrong_type:quantite"]),
                          ("1E0", ["wrong_type:quantite"]), ("1e2", ["wrong_type:quantite"]),
                          ("1e400", ["wrong_type:quantite"]), ("-1e400", ["wrong_type:quantite"]),
                          ("true", ["wrong_type:quantite"]), ("false", ["wrong_type:quantite"]),
                          ('"1"', ["wrong_type:quantite"]), ('"deux"', ["wrong_type:quantite"]),
                          ('""', ["wrong_type:quantite"]), ("null", ["missing_field:quantite"])]:
        field("quantite", "quantite", raw, expected)
    add("quantite/missing", sale(quantite=MISSING), ["missing_field:quantite"])

    # --- montant and prix_unitaire ---------------------------------------------------------------------
    for raw, expected in [("0", []), ("-0", []), ("0.0", []), ("-0.0", []), ("0.00", []), ("0.01", []), ("1", []),
                          ("12.5", []), ("12.30", []), ("12.3400", []), ("0.010", []), ("100.000", []),
                          ("0.1" + "0" * 37, []), ("12.34" + "0" * 34, []), ("999999999999.99", []),
                          ("999999999999", []), ("0.001", ["bad_amount:montant"]), ("12.345", ["bad_amount:montant"]),
                          ("999999999999.995", ["bad_amount:montant"]), ("1000000000000", ["bad_amount:montant"]),
                          ("1000000000000.00", ["bad_amount:montant"]), ("-1000000000000", ["bad_amount:montant"]),
                          ("12345678901234.5", ["bad_amount:montant"]), ("9223372036854775807", ["bad_amount:montant"]),
                          ("9223372036854775808", ["bad_amount:montant"]), ("1e400", ["bad_amount:montant"]),
                          ("1e-400", ["bad_amount:montant"]), ("1e20", ["bad_amount:montant"]),
                          ("1.5e2", ["bad_amount:montant"]), ("1E2", ["bad_amount:montant"]),
                          ("0e0", ["bad_amount:montant"]), ("5e-1", ["bad_amount:montant"]),
                          ("-1e2", ["bad_amount:montant"]),
                          ("1." + "0" * 38, ["bad_amount:montant"]),  # 39 digits
                          ("1.234567890123456789012345678901234567", ["bad_amount:montant"]),  # 37 digits, 36 decimals
                          ("12345678901234567890123456789012345678.9", ["bad_amount:montant"]),  # 39 digits
                          ("0." + "0" * 38 + "1", ["bad_amount:montant"]),  # 39 decimals
                          ("1" + "0" * 38, ["bad_amount:montant"]),  # 39-digit integer
                          ("-5", ["negative_amount:montant"]), ("-0.01", ["negative_amount:montant"]),
                          ("-999999999999.99", ["negative_amount:montant"]), ("-12.50", ["negative_amount:montant"]),
                          ("-12.505", ["bad_amount:montant"]), ('"12.50"', ["wrong_type:montant"]),
                          ('"cent euros"', ["wrong_type:montant"]), ("true", ["wrong_type:montant"]),
                          ("false", ["wrong_type:montant"]), ("null", ["missing_field:montant"])]:
        field("montant", "montant", raw, expected)
    add("montant/missing", sale(montant=MISSING), ["missing_field:montant"])
    for raw, expected in [("5.49", []), ("0", []), ("null", []), ("-1", ["negative_amount:prix_unitaire"]),
                          ("1.001", ["bad_amount:prix_unitaire"]), ("1e2", ["bad_amount:prix_unitaire"]),
                          ('"5"', ["wrong_type:prix_unitaire"]), ("true", ["wrong_type:prix_unitaire"]),
                          ("1000000000000", ["bad_amount:prix_unitaire"])]:
        field("montant", "prix_unitaire", raw, expected)
    add("montant/prix_unitaire_missing", sale(prix_unitaire=MISSING), [])
    add("montant/both_bad", sale(montant="-1", prix_unitaire="0.001"),
        ["negative_amount:montant", "bad_amount:prix_unitaire"])

    # --- ids -------------------------------------------------------------------------------------------
    for f in ("vente_id", "client_id", "produit_id"):
        for raw, expected in [("42", []), ("0", []), ("-1", []), ("9223372036854775807", []),
                              ("-9223372036854775808", []), ("9223372036854775808", [f"wrong_type:{f}"]),
                              ("-9223372036854775809", [f"wrong_type:{f}"]), ("1.0", [f"wrong_type:{f}"]),
                              ("1e3", [f"wrong_type:{f}"]), ("true", [f"wrong_type:{f}"]),
                              ('""', [f"bad_text:{f}"]), (json.dumps("a" * 64), []),
                              (json.dumps("a" * 65), [f"bad_text:{f}"]), ("null", [f"missing_field:{f}"])]:
            field("ids", f, raw, expected)
        add(f"ids/{f}_missing", sale(**{f: MISSING}), [f"missing_field:{f}"])
    for raw, expected, label in [
            (json.dumps("é" * 64, ensure_ascii=False), [], "64_e_acute"),
            (json.dumps("é" * 65, ensure_ascii=False), ["bad_text:vente_id"], "65_e_acute"),
            (json.dumps("😀" * 64, ensure_ascii=False), [], "64_emoji"),
            (json.dumps("😀" * 65, ensure_ascii=False), ["bad_text:vente_id"], "65_emoji"),
            (json.dumps("😀" * 64), [], "64_emoji_escaped_pairs"),
            (json.dumps("😀" * 65), ["bad_text:vente_id"], "65_emoji_escaped_pairs"),
            ('"vente-日本-€"', [], "unicode"), ('" "', [], "space"), ('"a\\u0000"', ["bad_text:vente_id"], "nul"),
            ('"a\\n"', ["bad_text:vente_id"], "newline"), ('"a\\t"', ["bad_text:vente_id"], "tab"),
            ('"a\x7f"', ["bad_text:vente_id"], "raw_del"), ('"a\u0085"', ["bad_text:vente_id"], "raw_nel"),
            ('"a\\u009f"', ["bad_text:vente_id"], "c1_9f"), ('"a\u00a0"', [], "nbsp"),
            ('"' + "a" * 63 + '\\u0001"', ["bad_text:vente_id"], "64_with_control")]:
        field("ids", "vente_id", raw, expected, label)
    add("ids/all_empty", sale(vente_id='""', client_id='""', produit_id='""'),
        ["bad_text:vente_id", "bad_text:client_id", "bad_text:produit_id"])

    # --- text fields -----------------------------------------------------------------------------------
    mt = 200
    for f in ("client_nom", "produit_nom", "categorie", "pays", "ville", "canal", "devise"):
        required = f in REQUIRED
        for raw, expected, label in [
                (json.dumps("a" * mt), [], "200_ascii"), (json.dumps("a" * (mt + 1)), [f"bad_text:{f}"], "201_ascii"),
                ('""', [f"bad_text:{f}"] if required else [], "empty"),
                ('"a\\u0001"', [f"bad_text:{f}"], "control_01"), ("12345", [f"wrong_type:{f}"], "number"),
                ("true", [f"wrong_type:{f}"], "true"), ("null", [f"missing_field:{f}"] if required else [], "null")]:
            field("text", f, raw, expected, label)
        add(f"text/{f}=missing", sale(**{f: MISSING}), [f"missing_field:{f}"] if required else [])
    for raw, expected, label in [
            (json.dumps("é" * mt, ensure_ascii=False), [], "200_e_acute"),
            (json.dumps("é" * (mt + 1), ensure_ascii=False), ["bad_text:client_nom"], "201_e_acute"),
            (json.dumps("日" * mt, ensure_ascii=False), [], "200_cjk"),
            (json.dumps("日" * (mt + 1), ensure_ascii=False), ["bad_text:client_nom"], "201_cjk"),
            (json.dumps("😀" * mt, ensure_ascii=False), [], "200_emoji"),
            (json.dumps("😀" * (mt + 1), ensure_ascii=False), ["bad_text:client_nom"], "201_emoji"),
            (json.dumps("😀" * mt), [], "200_emoji_escaped"),
            (json.dumps("😀" * (mt + 1)), ["bad_text:client_nom"], "201_emoji_escaped"),
            (json.dumps("e\u0301" * (mt // 2), ensure_ascii=False), [], "200_code_points_combining"),
            (json.dumps("e\u0301" * (mt // 2) + "e", ensure_ascii=False), ["bad_text:client_nom"], "201_combining"),
            (json.dumps("😀" * (mt - 1) + "a", ensure_ascii=False), [], "199_emoji_1_ascii"),
            ('"  "', [], "spaces"), ('"a\\u001f"', ["bad_text:client_nom"], "control_1f"),
            ('"a\\u007f"', ["bad_text:client_nom"], "escaped_del"), ('"a\x7f"', ["bad_text:client_nom"], "raw_del"),
            ('"a\\u0080"', ["bad_text:client_nom"], "c1_80"), ('"a\\u009f"', ["bad_text:client_nom"], "c1_9f"),
            ('"a\u0085"', ["bad_text:client_nom"], "raw_nel_85"), ('"a\\u00a0"', [], "nbsp_a0"),
            ('"a\\u200b"', [], "zero_width_space"), ('"a\\u2028"', [], "escaped_u2028"), ('"\\ufeff"', [], "bom_char"),
            ('"a\\r\\n"', ["bad_text:client_nom"], "escaped_crlf"), ('"\\u0000"', ["bad_text:client_nom"], "only_nul")]:
        field("text", "client_nom", raw, expected, label)

    # --- bidirectional controls are refused; other format characters (Cf) are kept (issue #32) -----------
    bidi = {"alm_061c": "\u061c", "lrm_200e": "\u200e", "rlm_200f": "\u200f", "lre_202a": "\u202a",
            "rle_202b": "\u202b", "pdf_202c": "\u202c", "lro_202d": "\u202d", "rlo_202e": "\u202e",
            "lri_2066": "\u2066", "rli_2067": "\u2067", "fsi_2068": "\u2068", "pdi_2069": "\u2069"}
    for label, ch in bidi.items():
        field("bidi", "client_nom", json.dumps(f"Alice{ch}ecilA", ensure_ascii=False), ["bad_text:client_nom"],
              f"raw_{label}")
        field("bidi", "client_nom", json.dumps(f"Alice{ch}ecilA"), ["bad_text:client_nom"], f"escaped_{label}")
    field("bidi", "vente_id", json.dumps("v-\u202e1"), ["bad_text:vente_id"], "rlo_in_id")
    field("bidi", "pays", json.dumps("\u2067France\u2069", ensure_ascii=False), ["bad_text:pays"], "isolate_pair")
    add("bidi/two_fields", sale(client_nom=json.dumps("a\u202e"), ville=json.dumps("b\u200f")),
        ["bad_text:client_nom", "bad_text:ville"])
    # Just outside the refused ranges: kept, and shown as <U+XXXX> by the readers.
    for label, ch in {"zwsp_200b": "\u200b", "zwnj_200c": "\u200c", "zwj_200d": "\u200d",
                      "word_joiner_2060": "\u2060", "bom_feff": "\ufeff", "soft_hyphen_00ad": "\u00ad",
                      "before_lre_2029": "\u2029", "after_rlo_202f": "\u202f", "before_lri_2065": "\u2065",
                      "after_pdi_206a": "\u206a", "arabic_061b": "\u061b"}.items():
        field("format_chars", "client_nom", json.dumps(f"Ali{ch}ce", ensure_ascii=False), [], label)
    field("text", "canal", '"fax"', [], "unknown_canal_is_free_text")
    field("text", "devise", '"USD"', [], "other_currency")

    # --- segment ---------------------------------------------------------------------------------------
    for raw, expected in [('"B2C"', []), ('"B2B"', []), ('"Particulier"', []), ('"Entreprise"', []),
                          ('"B\\u0032C"', []), ('"b2c"', ["unknown_segment"]), ('"b2b"', ["unknown_segment"]),
                          ('"B2C "', ["unknown_segment"]), ('" B2B"', ["unknown_segment"]),
                          ('"particulier"', ["unknown_segment"]), ('"ENTREPRISE"', ["unknown_segment"]),
                          ('"B2G"', ["unknown_segment"]), ('""', ["unknown_segment"]),
                          ('"Ｂ2Ｃ"', ["unknown_segment"]), ('"B2C\\u0000"', ["unknown_segment"]),
                          ('"Gouvernement"', ["unknown_segment"]), ("1", ["wrong_type:segment"]),
                          ("true", ["wrong_type:segment"]), ("null", ["missing_field:segment"])]:
        field("segment", "segment", raw, expected)

    # --- timestamps ------------------------------------------------------------------------------------
    e = event_time
    plain = e.strftime("%Y-%m-%dT%H:%M:%S")
    good = {"z": iso(e, zulu=True), "utc_offset": iso(e), "minus_zero": iso(e).replace("+00:00", "-00:00"),
            "plus_1400": iso(e, 14 * 60), "minus_1400": iso(e, -14 * 60), "plus_1359": iso(e, 13 * 60 + 59),
            "minus_1359": iso(e, -(13 * 60 + 59)), "plus_0545": iso(e, 5 * 60 + 45), "minus_0930": iso(e, -570),
            "no_fraction": iso(e, digits=0, zulu=True), "simulator_millis": json.loads(base["timestamp"])}
    for digits in range(1, 7):
        good[f"fraction_{digits}_digits"] = iso(e, digits=digits, zulu=True)
    for label, text in good.items():
        field("timestamp", "timestamp", json.dumps(text), [], label)
    bad = {"plus_1401": iso(e, 14 * 60 + 1), "minus_1401": iso(e, -(14 * 60 + 1)), "plus_1900": iso(e, 19 * 60),
           "minus_1430": iso(e, -(14 * 60 + 30)), "plus_1460": plain + "+14:60", "minute_60": plain + "+01:60",
           "no_colon_offset": plain + "+0100", "hour_only_offset": plain + "+01", "offset_seconds": plain + "+01:00:00",
           "no_offset": plain, "no_offset_fraction": plain + ".123", "lowercase_t": plain.replace("T", "t") + "Z",
           "lowercase_z": plain + "z", "space_separator": plain.replace("T", " ") + "Z",
           "utc_word": plain + " UTC", "zone_name": plain + "Z[Europe/Paris]", "year_only": plain[:4],
           "date_only": plain[:10], "date_only_z": plain[:10] + "Z", "no_seconds": plain[:16] + "Z",
           "fraction_7_digits": plain + ".1234567Z", "fraction_9_digits": plain + ".123456789Z",
           "empty_fraction": plain + ".Z", "comma_fraction": plain + ",5Z", "hour_24": plain[:11] + "24:00:00Z",
           "second_60": plain[:17] + "60Z", "minute_60_time": plain[:14] + "60:00Z",
           "month_13": plain[:5] + "13" + plain[7:] + "Z",
           "month_00": plain[:5] + "00" + plain[7:] + "Z", "day_32": plain[:8] + "32" + plain[10:] + "Z",
           "day_00": plain[:8] + "00" + plain[10:] + "Z", "april_31": "2025-04-31T10:00:00Z",
           "feb_29_2023": "2023-02-29T12:00:00Z", "feb_29_1900": "1900-02-29T12:00:00Z",
           "feb_29_2100": "2100-02-29T12:00:00Z", "feb_30_2024": "2024-02-30T12:00:00Z",
           "year_0000": "0000-01-01T00:00:00Z", "year_0000_plus_14": "0000-12-31T23:00:00-14:00",
           "five_digit_year": "10000-01-01T00:00:00Z", "plus_year": "+" + plain + "Z", "minus_year": "-" + plain + "Z",
           "two_digit_year": plain[2:] + "Z", "leading_space": " " + plain + "Z", "trailing_space": plain + "Z ",
           "trailing_newline": plain + "Z\n", "trailing_u2028": plain + "Z\u2028",
           "leading_nbsp": "\u00a0" + plain + "Z",
           "arabic_indic_digits": plain.translate({ord(d): 0x660 + int(d) for d in "0123456789"}) + "Z",
           "fullwidth_digits": plain.translate({ord(d): 0xff10 + int(d) for d in "0123456789"}) + "Z",
           "slashes": plain.replace("-", "/") + "Z", "compact": plain.replace("-", "").replace(":", "") + "Z",
           "single_digit_month": "2026-1-05T10:00:00Z", "epoch_string": "1733998525", "words": "hier à midi",
           "empty": "", "two_timestamps": plain + "Z" + plain + "Z", "week_date": "2026-W01-1T10:00:00Z",
           "ordinal_date": "2026-001T10:00:00Z", "nul_inside": plain + "\u0000Z",
           "lowercase_t_offset": plain.replace("T", "t") + "+01:00"}
    for label, text in bad.items():
        field("timestamp", "timestamp", json.dumps(text, ensure_ascii=False), ["bad_timestamp"], label)
    for label, text, expected in [
            ("feb_29_2024_leap", "2024-02-29T12:00:00Z", ["stale_event"]),
            ("feb_29_2000_leap", "2000-02-29T12:00:00Z", ["stale_event"]),
            ("feb_29_2028_leap", "2028-02-29T12:00:00Z", ["future_event"]),
            ("year_0001_plus_1400", "0001-01-01T00:00:00+14:00", ["stale_event"]),
            ("year_0001_z", "0001-01-01T00:00:00Z", ["stale_event"]),
            ("year_0001_minus_1400", "0001-01-01T00:00:00-14:00", ["stale_event"]),
            ("year_9999_minus_1400", "9999-12-31T23:59:59-14:00", ["future_event"]),
            ("year_9999_max_z", "9999-12-31T23:59:59.999999Z", ["future_event"]),
            ("year_9999_plus_1400", "9999-12-31T23:59:59+14:00", ["future_event"]),
            ("epoch", "1970-01-01T00:00:00Z", ["stale_event"]),
            ("before_epoch", "1969-12-31T23:59:59.999999Z", ["stale_event"]),
            ("year_1582_gap", "1582-10-10T00:00:00Z", ["stale_event"])]:
        field("timestamp", "timestamp", json.dumps(text), expected, label)
    for raw, expected, label in [("1733998525", ["wrong_type:timestamp"], "epoch_number"),
                                 ("1733998525.5", ["wrong_type:timestamp"], "epoch_decimal"),
                                 ("true", ["wrong_type:timestamp"], "true"),
                                 ("null", ["missing_field:timestamp"], "null")]:
        field("timestamp", "timestamp", raw, expected, label)
    add("timestamp/missing", sale(timestamp=MISSING), ["missing_field:timestamp"])

    # --- plausibility (event time against the reference) -----------------------------------------------
    skew, age = timedelta(microseconds=LIMITS.max_future_skew_us), timedelta(microseconds=LIMITS.max_event_age_us)
    us = timedelta(microseconds=1)
    for label, t, offset, expected in [
            ("at_reference", reference, 0, []), ("at_future_limit", reference + skew, 0, []),
            ("future_limit_plus_1us", reference + skew + us, 0, ["future_event"]),
            ("future_limit_plus_1ms", reference + skew + timedelta(milliseconds=1), 0, ["future_event"]),
            ("future_limit_plus_1s", reference + skew + timedelta(seconds=1), 0, ["future_event"]),
            ("future_limit_minus_1us", reference + skew - us, 0, []),
            ("at_future_limit_plus_1400", reference + skew, 14 * 60, []),
            ("future_limit_plus_1us_minus_1400", reference + skew + us, -14 * 60, ["future_event"]),
            ("future_one_year", reference + timedelta(days=365), 0, ["future_event"]),
            ("at_age_limit", reference - age, 0, []),
            ("age_limit_minus_1us", reference - age - us, 0, ["stale_event"]),
            ("age_limit_plus_1us", reference - age + us, 0, []),
            ("age_limit_minus_1s", reference - age - timedelta(seconds=1), 0, ["stale_event"]),
            ("at_age_limit_minus_1400", reference - age, -14 * 60, []),
            ("age_limit_minus_1us_plus_0530", reference - age - us, 330, ["stale_event"]),
            ("stale_366_days", reference - timedelta(days=366), 0, ["stale_event"]),
            ("stale_10_years", reference - timedelta(days=3653), 120, ["stale_event"])]:
        add(f"plausibility/{label}", sale(timestamp=json.dumps(iso(t, offset))), expected)
    add("plausibility/future_and_other_errors", sale(timestamp=json.dumps(iso(reference + skew + us)), quantite="0"),
        ["future_event", "bad_quantity"])

    # --- contract_version ------------------------------------------------------------------------------
    for raw, expected in [("1", []), ("0", ["unsupported_version"]), ("2", ["unsupported_version"]),
                          ("-1", ["unsupported_version"]), ("2147483648", ["unsupported_version"]),
                          ("9223372036854775807", ["unsupported_version"]),
                          ("9223372036854775808", ["wrong_type:contract_version"]),
                          ("1" + "0" * 30, ["wrong_type:contract_version"]),
                          ("1.0", ["wrong_type:contract_version"]), ("1e0", ["wrong_type:contract_version"]),
                          ('"1"', ["wrong_type:contract_version"]), ("true", ["wrong_type:contract_version"]),
                          ("null", [])]:
        field("version", "contract_version", raw, expected)
    add("version/missing", sale(contract_version=MISSING), [])

    # --- missing and null fields -----------------------------------------------------------------------
    add("missing/all_required_missing", sale(**{f: MISSING for f in REQUIRED}), ALL_MISSING)
    add("missing/all_null", sale(**{f: "null" for f in base}), ALL_MISSING)
    add("missing/all_optional_null", sale(**{f: "null" for f in OPTIONAL}), [])
    add("missing/only_extra_fields", '{"foo":1,"bar":"x"}', ALL_MISSING)
    add("missing/renamed_case", S.replace('"vente_id"', '"Vente_id"').replace('"montant"', '"MONTANT"'),
        ["missing_field:vente_id", "missing_field:montant"])
    add("missing/renamed_space", S.replace('"quantite"', '"quantite "'), ["missing_field:quantite"])
    add("missing/accented_name", S.replace('"quantite"', '"quantité"'), ["missing_field:quantite"])
    add("missing/two_missing_one_null", sale(client_id=MISSING, pays=MISSING, segment="null"),
        ["missing_field:client_id", "missing_field:pays", "missing_field:segment"])

    # --- booleans where numbers go ---------------------------------------------------------------------
    for f in ("vente_id", "quantite", "montant", "prix_unitaire", "contract_version"):
        for lit in ("true", "false"):
            add(f"booleans/{f}={lit}", sale(**{f: lit}), [f"wrong_type:{f}"])
    add("booleans/all_numbers_true", sale(quantite="true", montant="false", prix_unitaire="true",
                                          contract_version="false"),
        ["wrong_type:quantite", "wrong_type:montant", "wrong_type:prix_unitaire", "wrong_type:contract_version"])

    # --- several reasons at once, in FIELDS order --------------------------------------------------------
    add("combined/one_per_field", sale(vente_id='""', client_id="1.5", produit_id="null", timestamp='"hier"',
                                       quantite="0", montant="-5", client_nom='"a\\u0001"', produit_nom="7",
                                       categorie=MISSING, pays='""', segment='"B2G"', prix_unitaire="1.001",
                                       ville='"' + "v" * 201 + '"', canal="true", devise='"\\u0085"',
                                       contract_version="2"),
        ["bad_text:vente_id", "wrong_type:client_id", "missing_field:produit_id", "bad_timestamp", "bad_quantity",
         "negative_amount:montant", "bad_text:client_nom", "wrong_type:produit_nom", "missing_field:categorie",
         "bad_text:pays", "unknown_segment", "bad_amount:prix_unitaire", "bad_text:ville", "wrong_type:canal",
         "bad_text:devise", "unsupported_version"])
    add("combined/every_field_wrong_type", sale(**{f: ("true" if f != "vente_id" else "1.5") for f in base}),
        [f"wrong_type:{f}" for f in ("vente_id", "client_id", "produit_id", "timestamp", "quantite", "montant",
                                     "client_nom", "produit_nom", "categorie", "pays", "segment", "prix_unitaire",
                                     "ville", "canal", "devise", "contract_version")])
    add("combined/stale_and_bad_amount", sale(timestamp='"2000-01-01T00:00:00Z"', montant="0.001"),
        ["stale_event", "bad_amount:montant"])

    names = [c.name for c in cases]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    return cases


def _sale_fields(event_time: datetime) -> dict[str, str]:
    """The simulator's sale at ``event_time``, field -> raw JSON text, without ``type_evenement`` (the
    corpora write it themselves where a case is about it)."""
    fields = SalesSimulator(1, 5).sale(event_time)
    return {k: json.dumps(v, ensure_ascii=False) for k, v in fields.items() if k != "type_evenement"}


# --- returns and cancellations --------------------------------------------------------------------------
# What each type must carry, in FIELDS order (docs/CONTRACT.md).
RETOUR_REQUIRED = ("vente_id", "retour_id", "client_id", "timestamp", "quantite", "montant")
ANNULATION_REQUIRED = ("vente_id", "retour_id", "client_id", "timestamp")
# What a sale needs that a correction does not carry: missing when a correction is judged as a sale.
SALE_ONLY_REQUIRED = ("produit_id", "client_nom", "produit_nom", "categorie", "pays", "segment")


def correction_corpus(reference: datetime) -> list[Case]:
    """Returns (``retour``) and cancellations (``annulation``), and the event type itself, with the verdict
    intended: each type's own fields and rules, a sale's when the type is absent or unknown, and a field
    that is not part of the record's type ignored."""
    assert reference.tzinfo is not None and reference.microsecond == 0
    event_time = reference - timedelta(minutes=1)
    sale_base = _sale_fields(event_time)
    common = {k: sale_base[k] for k in ("vente_id", "client_id", "timestamp")}
    retour_base = {"type_evenement": '"retour"', "retour_id": '"R-0001"', **common, "quantite": "1",
                   "montant": "12.50"}
    annulation_base = {"type_evenement": '"annulation"', "retour_id": '"A-0001"', **common}
    cases: list[Case] = []

    def add(name: str, value: str, expected: list[str]) -> None:
        cases.append(Case(name, value.encode("utf-8"), list(expected)))

    def sale(extra: tuple[tuple[str, str], ...] = (), **fields: object) -> str:
        return compose(sale_base, extra, fields)

    def retour(extra: tuple[tuple[str, str], ...] = (), **fields: object) -> str:
        return compose(retour_base, extra, fields)

    def annulation(extra: tuple[tuple[str, str], ...] = (), **fields: object) -> str:
        return compose(annulation_base, extra, fields)

    bases = {"retour": retour_base, "annulation": annulation_base}
    builders = {"retour": retour, "annulation": annulation}
    escaped_types = {"retour": '"\\u0072etour"', "annulation": '"\\u0061nnulation"'}
    mq = LIMITS.max_quantite

    def missing(names: tuple[str, ...]) -> list[str]:
        return [f"missing_field:{f}" for f in names]

    # --- valid -----------------------------------------------------------------------------------------
    for kind, build in builders.items():
        add(f"{kind}/base", build(), [])
        add(f"{kind}/motif", build(motif=json.dumps("article abîmé, client parti", ensure_ascii=False)), [])
        add(f"{kind}/motif_empty", build(motif='""'), [])
        add(f"{kind}/motif_spaces", build(motif='"  "'), [])
        add(f"{kind}/motif_null", build(motif="null"), [])
        add(f"{kind}/motif_200_chars", build(motif=json.dumps("m" * 200)), [])
        add(f"{kind}/integer_ids", build(retour_id="42", vente_id="7", client_id="-9223372036854775808"), [])
        add(f"{kind}/contract_version_1", build(contract_version="1"), [])
        add(f"{kind}/contract_version_null", build(contract_version="null"), [])
        add(f"{kind}/extra_fields", build(extra=(('"commentaire"', '"ok"'), ('"n"', "1"), ('"z"', "null"))), [])
        add(f"{kind}/type_escaped", build(type_evenement=escaped_types[kind]), [])
        add(f"{kind}/type_key_escaped", build().replace('"type_evenement"', '"\\u0074ype_evenement"'), [])
        untyped = {k: v for k, v in bases[kind].items() if k != "type_evenement"}
        add(f"{kind}/type_last", compose(untyped, fields={"type_evenement": json.dumps(kind)}), [])
        add(f"{kind}/offset_timestamp", build(timestamp=json.dumps(iso(event_time, -570))), [])
        add(f"{kind}/pretty_printed", json.dumps(json.loads(build()), indent=2), [])
    add("retour/quantite_max", retour(quantite=str(mq)), [])
    add("retour/montant_zero", retour(montant="0"), [])
    add("retour/montant_max", retour(montant="999999999999.99"), [])
    add("retour/montant_integer", retour(montant="12"), [])

    # --- required fields, per type ---------------------------------------------------------------------
    for kind, build, required in (("retour", retour, RETOUR_REQUIRED), ("annulation", annulation, ANNULATION_REQUIRED)):
        for f in required:
            add(f"{kind}/missing_{f}", build(**{f: MISSING}), [f"missing_field:{f}"])
            add(f"{kind}/null_{f}", build(**{f: "null"}), [f"missing_field:{f}"])
        add(f"{kind}/all_required_null", build(**{f: "null" for f in required}), missing(required))
        add(f"{kind}/only_type", "{" + f'"type_evenement":"{kind}"' + "}", missing(required))
    add("retour/missing_quantite_and_montant", retour(quantite=MISSING, montant=MISSING),
        missing(("quantite", "montant")))

    # --- wrong types -----------------------------------------------------------------------------------
    for kind, build in builders.items():
        for f, raw in [("retour_id", "true"), ("retour_id", "1.5"), ("retour_id", "1e3"),
                       ("retour_id", "9223372036854775808"), ("vente_id", "false"), ("vente_id", "2.0"),
                       ("client_id", "1.5"), ("timestamp", "1733998525"), ("timestamp", "true"), ("motif", "5"),
                       ("motif", "true"), ("contract_version", '"1"')]:
            add(f"{kind}/wrong_type_{f}={raw}", build(**{f: raw}), [f"wrong_type:{f}"])
    for f, raw in [("quantite", '"1"'), ("quantite", "1.0"), ("quantite", "1e0"), ("quantite", "true"),
                   ("quantite", "9223372036854775808"), ("montant", '"12.50"'), ("montant", "true"),
                   ("montant", "false")]:
        add(f"retour/wrong_type_{f}={raw}", retour(**{f: raw}), [f"wrong_type:{f}"])
    add("retour/every_field_wrong_type",
        retour(vente_id="true", retour_id="true", client_id="true", timestamp="true", quantite="true", montant="true",
               motif="true", contract_version="true"),
        [f"wrong_type:{f}" for f in ("vente_id", "retour_id", "client_id", "timestamp", "quantite", "montant",
                                     "motif", "contract_version")])
    add("annulation/every_field_wrong_type",
        annulation(vente_id="1.5", retour_id="false", client_id="true", timestamp="12", motif="1",
                   contract_version="true"),
        [f"wrong_type:{f}" for f in ("vente_id", "retour_id", "client_id", "timestamp", "motif", "contract_version")])

    # --- retour_id and motif values (an id's and a text's rules) ---------------------------------------
    for kind, build in builders.items():
        for raw, bad, label in [
                ('""', True, "empty"), ('" "', False, "space"), (json.dumps("r" * 64), False, "64_chars"),
                (json.dumps("r" * 65), True, "65_chars"),
                (json.dumps("é" * 64, ensure_ascii=False), False, "64_e_acute"),
                (json.dumps("é" * 65, ensure_ascii=False), True, "65_e_acute"),
                (json.dumps("😀" * 65), True, "65_emoji_escaped_pairs"), ('"r\\u0000"', True, "nul"),
                ('"r\\u0001"', True, "control_01"), ('"r\\n"', True, "newline"), ('"r\x7f"', True, "raw_del"),
                ('"r\\u009f"', True, "c1_9f"), (json.dumps("R-\u202e1", ensure_ascii=False), True, "raw_rlo"),
                (json.dumps("R-\u2067x\u2069"), True, "escaped_isolates"), (json.dumps("R-\u200e1"), True, "lrm"),
                (json.dumps("R-\u200b1"), False, "zero_width_space"), ('"R-日本-€"', False, "unicode"),
                ("0", False, "zero"), ("-9223372036854775808", False, "int64_min")]:
            add(f"{kind}/retour_id={label}", build(retour_id=raw), ["bad_text:retour_id"] if bad else [])
        for raw, bad, label in [
                (json.dumps("m" * 201), True, "201_chars"),
                (json.dumps("é" * 201, ensure_ascii=False), True, "201_e_acute"),
                ('"a\\u0001"', True, "control_01"), ('"a\\r\\n"', True, "crlf"), ('"a\\u0085"', True, "nel"),
                (json.dumps("abîmé\u202e", ensure_ascii=False), True, "raw_rlo"),
                (json.dumps("a\u061c"), True, "alm"),
                (json.dumps("a\u200d"), False, "zero_width_joiner"), (json.dumps("a\ufeff"), False, "bom_char")]:
            add(f"{kind}/motif={label}", build(motif=raw), ["bad_text:motif"] if bad else [])

    # --- quantite and montant of a return (a sale's rules) ---------------------------------------------
    for raw, expected in [("2", []), ("0", ["bad_quantity"]), ("-1", ["bad_quantity"]), ("-0", ["bad_quantity"]),
                          (str(mq + 1), ["bad_quantity"]), ("9223372036854775807", ["bad_quantity"]),
                          ("-9223372036854775809", ["wrong_type:quantite"]), ("1.5", ["wrong_type:quantite"]),
                          ('"deux"', ["wrong_type:quantite"])]:
        add(f"retour/quantite={raw}", retour(quantite=raw), expected)
    for raw, expected in [("0.00", []), ("-0", []), ("12.5", []), ("12.500", []), ("0.01", []),
                          ("-1", ["negative_amount:montant"]), ("-0.01", ["negative_amount:montant"]),
                          ("-12.50", ["negative_amount:montant"]), ("0.001", ["bad_amount:montant"]),
                          ("12.345", ["bad_amount:montant"]), ("-12.505", ["bad_amount:montant"]),
                          ("1e2", ["bad_amount:montant"]), ("5E-1", ["bad_amount:montant"]),
                          ("1000000000000", ["bad_amount:montant"]), ("999999999999.995", ["bad_amount:montant"]),
                          ("0." + "0" * 38 + "1", ["bad_amount:montant"]), ("1e400", ["bad_amount:montant"])]:
        add(f"retour/montant={raw[:40]}", retour(montant=raw), expected)
    add("retour/quantite_and_montant_bad", retour(quantite="0", montant="-5"),
        ["bad_quantity", "negative_amount:montant"])
    add("retour/montant_nan", retour(montant="NaN"), ["not_json"])

    # --- the event type itself: a sale unless it names another type -------------------------------------
    for raw, label in [('"vente"', "vente"), ("null", "null")]:
        add(f"event_type/sale_{label}", sale(type_evenement=raw), [])
        add(f"event_type/sale_{label}_first", "{" + f'"type_evenement":{raw},' + sale()[1:], [])
    for raw, label in [('"Vente"', "Vente"), ('"VENTE"', "VENTE"), ('"refund"', "refund"), ('""', "empty"),
                       ('"Retour"', "Retour"), ('"ANNULATION"', "ANNULATION"), ('"retour "', "trailing_space"),
                       ('" vente"', "leading_space"), ('"ventes"', "ventes"), ('"return"', "return"),
                       ('"vente\\u0000"', "nul"), ('"retour\\n"', "newline"),
                       (json.dumps("annulation\u202e", ensure_ascii=False), "rlo"),
                       (json.dumps("r\u00e9tour", ensure_ascii=False), "accented"),
                       (json.dumps("ｖｅｎｔｅ", ensure_ascii=False), "fullwidth"), ('"1"', "digit_string"),
                       (json.dumps("v" * 201), "201_chars")]:
        add(f"event_type/unknown_{label}", sale(type_evenement=raw), ["unknown_event_type"])
    for raw in ("1", "0", "-1", "1.5", "1e3", "true", "false", "9223372036854775808"):
        add(f"event_type/non_string={raw}", sale(type_evenement=raw), ["wrong_type:type_evenement"])
    add("event_type/nested_object", sale(type_evenement='{"nom":"retour"}'), ["nested_value"])
    add("event_type/nested_array", sale(type_evenement='["retour"]'), ["nested_value"])
    add("event_type/duplicate_key", retour(extra=(('"type_evenement"', '"vente"'),)), ["duplicate_key"])
    add("event_type/duplicate_escaped_key", retour(extra=(('"\\u0074ype_evenement"', '"retour"'),)),
        ["duplicate_key"])
    add("event_type/not_dup_case", retour(extra=(('"Type_evenement"', '"vente"'),)), [])
    # A correction whose type is unknown, wrong or absent is judged as a sale: a sale's fields are missing.
    add("event_type/retour_body_unknown_type", retour(type_evenement='"refund"'),
        ["unknown_event_type", *missing(SALE_ONLY_REQUIRED)])
    add("event_type/retour_body_type_null", retour(type_evenement="null"), missing(SALE_ONLY_REQUIRED))
    add("event_type/retour_body_type_vente", retour(type_evenement='"vente"'), missing(SALE_ONLY_REQUIRED))
    add("event_type/annulation_body_type_missing", annulation(type_evenement=MISSING),
        missing(("produit_id", "quantite", "montant", "client_nom", "produit_nom", "categorie", "pays", "segment")))
    add("event_type/annulation_body_type_true", annulation(type_evenement="true"),
        ["wrong_type:type_evenement",
         *missing(("produit_id", "quantite", "montant", "client_nom", "produit_nom", "categorie", "pays", "segment"))])
    add("event_type/only_unknown_type", '{"type_evenement":"refund"}',
        ["unknown_event_type", *missing(("vente_id", "client_id", "produit_id", "timestamp", "quantite", "montant",
                                         "client_nom", "produit_nom", "categorie", "pays", "segment"))])
    # A sale's own checks still run when its type is unknown.
    add("event_type/unknown_and_sale_errors", sale(type_evenement='"refund"', quantite="0", segment='"B2G"'),
        ["unknown_event_type", "bad_quantity", "unknown_segment"])

    # --- a field that is not part of the record's type is ignored --------------------------------------
    sale_only = {k: v for k, v in sale_base.items() if k not in retour_base}
    add("ignored/annulation_with_quantite_montant", annulation(quantite="2", montant="25.00"), [])
    add("ignored/annulation_with_bad_quantite_montant", annulation(quantite="0", montant="-5"), [])
    add("ignored/annulation_with_wrong_type_quantite_montant", annulation(quantite='"x"', montant="1e400"), [])
    add("ignored/annulation_with_every_sale_field", annulation(**sale_only, quantite="3", montant="9.99"), [])
    add("ignored/annulation_with_bad_sale_fields",
        annulation(produit_id="true", client_nom='""', produit_nom="5", segment='"B2G"', prix_unitaire="0.001",
                   ville='"\\u0001"', canal="true", devise=json.dumps("d" * 201), quantite="-1", montant="1.001"), [])
    add("ignored/retour_with_every_sale_field", retour(**sale_only), [])
    add("ignored/retour_with_bad_sale_fields",
        retour(produit_id="1.5", client_nom='""', categorie="null", pays="false", segment='"b2c"',
               prix_unitaire="-1", canal='"\\u202e"'), [])
    add("ignored/retour_without_sale_fields", retour(), [])
    add("ignored/sale_with_retour_id_motif", sale(retour_id='"R-0001"', motif='"erreur"'), [])
    add("ignored/sale_with_bad_retour_id_motif", sale(retour_id="true", motif="5"), [])
    add("ignored/sale_with_empty_retour_id", sale(retour_id='""', motif='"a\\u0001"'), [])
    add("ignored/sale_with_long_retour_id", sale(retour_id=json.dumps("r" * 65), motif=json.dumps("m" * 201)), [])
    add("ignored/sale_typed_vente_with_retour_id", sale(type_evenement='"vente"', retour_id="1.5"), [])

    # --- event time of a correction (judged as a sale's) -----------------------------------------------
    skew, age = timedelta(microseconds=LIMITS.max_future_skew_us), timedelta(microseconds=LIMITS.max_event_age_us)
    us = timedelta(microseconds=1)
    plain = event_time.strftime("%Y-%m-%dT%H:%M:%S")
    for kind, build in builders.items():
        for label, raw, expected in [
                ("at_reference", json.dumps(iso(reference)), []),
                ("at_future_limit", json.dumps(iso(reference + skew)), []),
                ("future_limit_plus_1us", json.dumps(iso(reference + skew + us)), ["future_event"]),
                ("future_limit_plus_1us_minus_1400", json.dumps(iso(reference + skew + us, -14 * 60)),
                 ["future_event"]),
                ("future_one_year", json.dumps(iso(reference + timedelta(days=365))), ["future_event"]),
                ("at_age_limit", json.dumps(iso(reference - age)), []),
                ("age_limit_minus_1us", json.dumps(iso(reference - age - us)), ["stale_event"]),
                ("stale_10_years", json.dumps(iso(reference - timedelta(days=3653), 120)), ["stale_event"]),
                ("year_9999", '"9999-12-31T23:59:59Z"', ["future_event"]),
                ("year_0001", '"0001-01-01T00:00:00Z"', ["stale_event"]),
                ("naive", json.dumps(plain), ["bad_timestamp"]), ("naive_fraction", json.dumps(plain + ".123456"),
                                                                  ["bad_timestamp"]),
                ("naive_millis", json.dumps(plain + ".123"), ["bad_timestamp"]),
                ("bad_words", '"hier"', ["bad_timestamp"]), ("feb_30", '"2024-02-30T12:00:00Z"', ["bad_timestamp"]),
                ("empty", '""', ["bad_timestamp"])]:
            add(f"correction_time/{kind}_{label}", build(timestamp=raw), expected)
    future = json.dumps(iso(reference + skew + us))
    stale = json.dumps(iso(reference - age - us))
    # Where the time's reason goes among the others: fields before the timestamp ignored by the type give none.
    add("correction_time/retour_future_among_others", retour(retour_id='""', timestamp=future, quantite="0"),
        ["bad_text:retour_id", "future_event", "bad_quantity"])
    add("correction_time/annulation_stale_among_others",
        annulation(retour_id=MISSING, timestamp=stale, motif='"a\\u0001"'),
        ["missing_field:retour_id", "stale_event", "bad_text:motif"])
    add("correction_time/annulation_future_after_ignored_fields",
        annulation(produit_id="true", quantite="0", timestamp=future), ["future_event"])
    add("correction_time/sale_future_after_ignored_retour_id", sale(retour_id='""', timestamp=future), ["future_event"])
    add("correction_time/unknown_type_future",
        sale(type_evenement='"refund"', vente_id='""', timestamp=future, quantite="0"),
        ["unknown_event_type", "bad_text:vente_id", "future_event", "bad_quantity"])
    add("correction_time/retour_body_wrong_type_future", retour(type_evenement="5", timestamp=future),
        ["wrong_type:type_evenement", "missing_field:produit_id", "future_event",
         *missing(("client_nom", "produit_nom", "categorie", "pays", "segment"))])

    # --- several reasons at once, in FIELDS order --------------------------------------------------------
    add("retour/one_per_field",
        retour(vente_id='""', retour_id="1.5", client_id="null", timestamp='"hier"', quantite="0", montant="-5",
               motif='"a\\u0001"', contract_version="2"),
        ["bad_text:vente_id", "wrong_type:retour_id", "missing_field:client_id", "bad_timestamp", "bad_quantity",
         "negative_amount:montant", "bad_text:motif", "unsupported_version"])
    add("annulation/one_per_field",
        annulation(vente_id=json.dumps("v" * 65), retour_id='""', client_id=MISSING, timestamp=stale,
                   motif="[]", contract_version="0"),
        ["nested_value"])
    add("annulation/one_per_field_flat",
        annulation(vente_id=json.dumps("v" * 65), retour_id='""', client_id=MISSING, timestamp=stale, motif="1",
                   contract_version="0"),
        ["bad_text:vente_id", "bad_text:retour_id", "missing_field:client_id", "stale_event", "wrong_type:motif",
         "unsupported_version"])

    names = [c.name for c in cases]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    return cases


# --- timestamps without offset, read in [streaming] naive_timezone ---------------------------------------
NAIVE_ZONE = "Europe/Paris"
# A long age limit, so that dates around past changes of the clocks are judged on their instant alone.
NAIVE_LIMITS = ContractLimits(naive_zone=NAIVE_ZONE, max_event_age_us=100 * 365 * 86400 * 1_000_000)


def naive_corpus(reference: datetime) -> list[Case]:
    """Sales whose timestamp has no offset (Python's ``datetime.now().isoformat()``), with the verdict
    intended under ``NAIVE_LIMITS``: read as Paris wall-clock time, then judged like any sale."""
    from zoneinfo import ZoneInfo

    assert reference.tzinfo is not None and reference.microsecond == 0
    paris = ZoneInfo(NAIVE_ZONE)
    base = SalesSimulator(1, 5).sale(reference - timedelta(minutes=1))
    skew = timedelta(microseconds=NAIVE_LIMITS.max_future_skew_us)
    age = timedelta(microseconds=NAIVE_LIMITS.max_event_age_us)

    def wall(t: datetime, digits: int = 6) -> str:
        local = t.astimezone(paris)
        return local.strftime("%Y-%m-%dT%H:%M:%S") + ("." + f"{local.microsecond:06d}"[:digits] if digits else "")

    e = reference - timedelta(minutes=1) + timedelta(microseconds=123456)
    texts = [
        ("now_6_digits", wall(e), []), ("now_3_digits", wall(e, 3), []), ("now_no_fraction", wall(e, 0), []),
        ("now_with_offset_still_fine", iso(e, 60), []),
        ("at_future_limit", wall(reference + skew), []),
        ("future_limit_plus_1s", wall(reference + skew + timedelta(seconds=1)), ["future_event"]),
        # The UTC wall-clock time read in Paris is one or two hours earlier: still plausible.
        ("utc_wall_clock", e.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f"), []),
        ("stale", wall(reference - age - timedelta(days=2)), ["stale_event"]),
        # Spring forward: 02:30 does not exist (read as 01:30 UTC); fall back: 02:30 is shown twice (the first).
        ("dst_gap", "2025-03-30T02:30:00", []), ("dst_gap_start", "2025-03-30T02:00:00", []),
        ("dst_overlap", "2025-10-26T02:30:00", []), ("dst_overlap_end", "2025-10-26T02:59:59.999999", []),
        ("dst_after_overlap", "2025-10-26T03:00:00", []),
        ("year_0001", "0001-01-01T00:00:00", ["stale_event"]), ("year_9999", "9999-12-31T23:59:59", ["future_event"]),
        ("no_seconds", wall(e)[:16], ["bad_timestamp"]),
        ("fraction_7_digits", wall(e, 0) + ".1234567", ["bad_timestamp"]),
        ("space_separator", wall(e).replace("T", " "), ["bad_timestamp"]),
        ("lowercase_t", wall(e).replace("T", "t"), ["bad_timestamp"]),
        ("feb_30", "2025-02-30T10:00:00", ["bad_timestamp"]),
        ("hour_24", "2025-01-01T24:00:00", ["bad_timestamp"]), ("trailing_space", wall(e) + " ", ["bad_timestamp"]),
        ("empty_fraction", wall(e, 0) + ".", ["bad_timestamp"]),
        ("year_0000", "0000-01-01T00:00:00", ["bad_timestamp"]),
        ("date_only", wall(e)[:10], ["bad_timestamp"]), ("zone_name", wall(e) + "[Europe/Paris]", ["bad_timestamp"]),
    ]
    cases = []
    for label, text, expected in texts:
        sale = dict(base, timestamp=text)
        cases.append(Case(f"naive/{label}", json.dumps(sale, ensure_ascii=False).encode(), expected))
    # Returns and cancellations: their time is read the same way.
    retour = {"type_evenement": "retour", "retour_id": "R-0001", "vente_id": base["vente_id"],
              "client_id": base["client_id"], "quantite": 1, "montant": 12.5}
    annulation = {"type_evenement": "annulation", "retour_id": "A-0001", "vente_id": base["vente_id"],
                  "client_id": base["client_id"], "motif": ""}
    for kind, correction in (("retour", retour), ("annulation", annulation)):
        for label, text, expected in [
                ("now", wall(e), []), ("dst_gap", "2025-03-30T02:30:00", []),
                ("dst_overlap", "2025-10-26T02:30:00", []),
                ("future_limit_plus_1s", wall(reference + skew + timedelta(seconds=1)), ["future_event"]),
                ("stale", wall(reference - age - timedelta(days=2)), ["stale_event"]),
                ("no_seconds", wall(e)[:16], ["bad_timestamp"])]:
            event = dict(correction, timestamp=text)
            cases.append(Case(f"naive/{kind}_{label}", json.dumps(event, ensure_ascii=False).encode(), expected))
    return cases
