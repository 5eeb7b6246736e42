"""Text from the data is only ever text (issue #32): no markup in report.md, no control sequence on the
terminal, nothing invisible or reordering, in every reader. Pure: no Spark."""

from __future__ import annotations

import html
import re
import unicodedata
from datetime import datetime
from decimal import Decimal

import pytest

from lakehouse.ops.demo import render
from lakehouse.serve.dashboard import ClientCounts, SilverSnapshot, format_dashboard
from lakehouse.serve.report import Section
from lakehouse.serve.safe_text import for_markdown, for_terminal, for_web, visible
from lakehouse.serve.web_tables import shown

# The hostile name classes: each is a client name (or a raw record) a reader must show as text.
HOSTILE = {
    "html_img": "<img src=x onerror=alert(1)>",
    "html_script": "<script>alert(1)</script>",
    "html_iframe": "<iframe src=javascript:alert(1)>",
    "html_entity": "&lt;b&gt; &amp; &#60;",
    "md_link_js": "[click](javascript:alert(1))",
    "md_image": "![x](http://evil/x.png)",
    "md_autolink": "<javascript:alert(1)>",
    "md_bold": "**bold**", "md_italic": "_it_", "md_heading": "# H1", "md_code": "`code`",
    "md_strike": "~~gone~~", "md_math": "$x^2$ and $$y$$", "md_list": "- item", "md_quote": "> quoted",
    "md_table_pipe": "a | b | c", "md_escape": "back\\slash \\| \\*",
    "newline": "line1\nline2", "cr": "over\rwrite", "crlf": "a\r\nb", "tab": "a\tb",
    "esc_osc_title": "\x1b]0;TITLE\x07\x1b[2J\x1b[31mred",
    "c1_csi": "\x9b31m", "nul": "a\x00b", "del": "a\x7fb", "bell": "\x07",
    "rlo": "Alice\u202eecilA", "lri_pdi": "\u2066abc\u2069", "lrm": "a\u200eb", "alm": "a\u061cb",
    "zero_width_space": "Ali\u200bce", "zero_width_joiner": "Ali\u200dce", "bom": "\ufeffAlice",
    "soft_hyphen": "Ali\u00adce", "word_joiner": "Ali\u2060ce", "line_separator": "a\u2028b",
    "paragraph_separator": "a\u2029b", "lone_surrogate": "a\udc80b",
    "emoji_zwj": "\U0001F468\u200d\U0001F469", "accents_and_scripts": "Chloé Ωμέγα 日本 مرحبا",
}
HIDDEN = ("Cc", "Cf", "Zl", "Zp", "Cs")


def hidden_chars(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) in HIDDEN]


def unescape_markdown(text: str) -> str:
    """What a CommonMark renderer shows for text with backslash escapes and entities (and no other markup)."""
    return html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text))


@pytest.mark.parametrize("name", HOSTILE)
def test_every_hostile_class_is_shown_as_visible_text(name: str) -> None:
    text = HOSTILE[name]
    for shown_text in (for_terminal(text), for_web(text)):
        assert hidden_chars(shown_text) == [], name
    markdown = for_markdown(text)
    assert hidden_chars(markdown) == [] and "\n" not in markdown
    assert not re.search(r"[<>]", markdown)
    # Every Markdown special character is escaped: a renderer shows exactly the visible text.
    assert not re.search(r"(?<!\\)(?:\\\\)*[`*_{}\[\]()#+\-.!|$~]", markdown.replace("\\\\", "")), markdown
    assert unescape_markdown(markdown) == visible(text)
    # Ordinary text is left alone.
    if name == "accents_and_scripts":
        assert for_terminal(text) == text


def test_the_marks_say_what_was_there() -> None:
    assert for_terminal(HOSTILE["esc_osc_title"]) == "\\x1b]0;TITLE\\x07\\x1b[2J\\x1b[31mred"
    assert for_terminal("over\rwrite\n\t\x9b\x00") == "over\\rwrite\\n\\t\\x9b\\x00"
    assert for_terminal(HOSTILE["rlo"]) == "Alice<U+202E>ecilA"
    # Two names that looked identical no longer do.
    assert for_terminal("Alice") != for_terminal(HOSTILE["zero_width_space"]) == "Ali<U+200B>ce"
    assert for_terminal(HOSTILE["bom"]) == "<U+FEFF>Alice"
    assert for_markdown(HOSTILE["html_img"]) == "&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert for_markdown("Ali\u200bce") == "Ali&lt;U\\+200B&gt;ce"
    assert for_web("Ali\u200bce <b>") == "Ali<U+200B>ce <b>"  # the page's renderer escapes the markup


def test_report_sections_keep_each_value_in_its_cell() -> None:
    names = list(HOSTILE.values())
    section = Section("Top clients (10)", ["client_nom", "total_depense", "nb_achats"],
                      [[n, Decimal("12.50"), i] for i, n in enumerate(names)])
    lines = section.markdown().split("\n")
    rows = lines[4:]
    assert lines[:4] == ["## Top clients (10)", "", "| client\\_nom | total\\_depense | nb\\_achats |",
                         "|---|---:|---:|"]
    assert len(rows) == len(names)
    for name, row in zip(names, rows):
        cells = re.split(r"(?<!\\)\|", row)[1:-1]  # a pipe not escaped ends a cell
        assert len(cells) == 3, row
        assert unescape_markdown(cells[0].strip()) == visible(name).strip()
        assert cells[1].strip() == "12.50 €"
    text = section.text()
    assert hidden_chars(text.replace("\n", "")) == [] and len(text.split("\n")) == 2 + 2 + len(names)


def test_terminal_dashboard_and_demo_view_show_names_as_text() -> None:
    clients = [{"client_id": str(i), "client_nom": n, "pays": n, "segment": "B2C", "nb_achats": 1,
                "total_depense": Decimal("1.00"), "segment_depense": "Economy", "est_client_fidele": False}
               for i, n in enumerate(list(HOSTILE.values())[:10])]
    pays = [{"pays": n, "nb_ventes": 1, "chiffre_affaires": Decimal("1.00"), "nb_clients": 1}
            for n in HOSTILE.values()]
    text = format_dashboard(SilverSnapshot(clients, pays, [], [], ClientCounts.of(clients)), datetime(2026, 1, 1))
    assert hidden_chars(text.replace("\n", "")) == []
    assert "\\x1b]0;TITLE\\x07" in text and "Alice<U+202E>ecilA" in text
    # The demo shows the dashboard file as written (an older version may have written it raw).
    screen = render([], "running", "Stream: ...", "Silver continuous", "Top\x1b[2J " + HOSTILE["rlo"] + "\n",
                    __import__("pathlib").Path("/l"), 0.0, 30)
    assert hidden_chars(screen.replace("\n", "")) == [] and "Top\\x1b[2J Alice<U+202E>ecilA" in screen


def test_web_rows_make_format_characters_visible() -> None:
    rows = shown([{"client_nom": HOSTILE["zero_width_space"], "pays": HOSTILE["rlo"], "nb": 3, "x": None}])
    assert rows == [{"client_nom": "Ali<U+200B>ce", "pays": "Alice<U+202E>ecilA", "nb": 3, "x": None}]


# --- returns and cancellations (issue 31): retour_id, motif and product names are text from the data ------

def test_corrections_text_is_shown_as_text_in_every_reader() -> None:
    import datetime as dt

    import pyarrow as pa

    from lakehouse.serve import web_tables as wt
    from lakehouse.serve.dashboard import CorrectionCounts
    from lakehouse.serve.queries import EVENT_COLUMNS

    names = list(HOSTILE.values())
    received = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)
    events = [{"retour_id": n, "type_evenement": "retour", "vente_id": n, "client_id": "C1", "event_ts": received,
               "jour": received.date(), "quantite": 1, "montant": Decimal("1.00"), "motif": n, "recu_le": received,
               "kafka_partition": 0, "kafka_offset": i, "raison": "client_mismatch"} for i, n in enumerate(names)]
    # The report (and the menu, which prints the same sections): one cell per value, nothing hidden.
    section = Section("Rejected events (latest)", EVENT_COLUMNS, [[e[c] for c in EVENT_COLUMNS] for e in events])
    rows = section.markdown().split("\n")[4:]
    assert len(rows) == len(names)
    for name, row in zip(names, rows):
        cells = re.split(r"(?<!\\)\|", row)[1:-1]
        assert len(cells) == len(EVENT_COLUMNS), row
        assert unescape_markdown(cells[2].strip()) == visible(name).strip()  # retour_id
        assert unescape_markdown(cells[8].strip()) == visible(name).strip()  # motif
    assert hidden_chars(section.text().replace("\n", "")) == []
    # The web page: orphans and refused events through for_web (a lone surrogate cannot be stored in a table).
    stored = [e for e in events if e["motif"] != HOSTILE["lone_surrogate"]]
    table = pa.Table.from_pylist([{k: v for k, v in e.items() if k != "raison"} for e in stored])
    silver = wt.Silver(*[pa.table({})] * 5, corrections_en_attente=table, rejets=pa.Table.from_pylist(stored),
                       rejets_by_raison={"client_mismatch": len(stored)}, versions={}, committed=None)
    for rows in (wt.orphans(silver, received + dt.timedelta(days=1), 3600), wt.latest_rejections(silver)):
        assert len(rows) == len(stored)
        for row, name in zip(sorted(rows, key=lambda r: r["kafka_offset"]), [e["motif"] for e in stored]):
            assert row["retour_id"] == row["motif"] == row["vente_id"] == for_web(name)
            assert hidden_chars(row["motif"]) == []
    # The terminal dashboard: hostile product names and categories.
    products = [{"produit_id": str(i), "produit_nom": n, "categorie": n, "nb_ventes": 1, "quantite_vendue": 1,
                 "quantite_retournee": 0, "taux_retour": 0.0, "chiffre_affaires": Decimal("1.00"),
                 "remboursements": Decimal("0.00")} for i, n in enumerate(names)]
    text = format_dashboard(SilverSnapshot([], [], [], [], ClientCounts.of([]), products,
                                           CorrectionCounts(rejected_by_reason={HOSTILE["esc_osc_title"]: 1})),
                            datetime(2026, 1, 1))
    assert hidden_chars(text.replace("\n", "")) == [] and "\\x1b]0;TITLE\\x07" in text
