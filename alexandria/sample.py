"""A small demo Calibre library, written offline: the README's first command needs nothing else.

The four books are short original texts on distinct topics (in English and French), so that a
semantic search over them has obvious right answers. Their metadata covers what a library reader
must cope with: two authors on one book, an author shared between books, non-ASCII names, tags, a
series with a fractional index, identifiers and two languages. Every value is fixed, so the
library has the same ids and content (and, with the same zlib and SQLite, the same bytes) each time.
"""

from __future__ import annotations

import io
import json
import sqlite3
import unicodedata
import zipfile
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from ebooklib import epub

__all__ = ["SAMPLE_BOOKS", "SampleBook", "make_sample_library"]

# When calibre "added" every book; fixed so that the output is deterministic.
ADDED = "2026-11-01 10:00:00+00:00"
_ADDED_DT = datetime(2026, 11, 1, 10, 0, 0, tzinfo=timezone.utc)
_LIBRARY_UUID = "a01de4df-c1a6-54b9-8723-50acaf78bc06"
_EPUB_LANG = {"eng": "en", "fra": "fr"}  # calibre stores ISO 639-2, EPUB wants BCP 47
_CSS = "body { font-family: serif; line-height: 1.4; }\nh1 { font-size: 1.6em; }\n"


@dataclass(frozen=True)
class SampleBook:
    """One book of the demo library, with calibre's metadata and its text."""

    id: int
    title: str
    title_sort: str
    authors: tuple[tuple[str, str], ...]  # (name, sort), first author names the folder
    language: str  # ISO 639-2, as calibre stores it
    tags: tuple[str, ...]
    isbn: str
    uuid: str
    pubdate: str
    publisher: str
    comments: str  # HTML, as calibre stores it
    text: str  # "## Chapter title" lines, paragraphs separated by blank lines
    series: str | None = None
    series_index: float = 1.0

    @property
    def path(self) -> str:
        """books.path: "Author/Title (id)", ASCII like calibre's folder names."""
        return f"{_ascii_filename(self.authors[0][0])}/{_ascii_filename(self.title)} ({self.id})"

    @property
    def file_stem(self) -> str:
        """data.name: "Title - Author", the format files' name without extension."""
        return f"{_ascii_filename(self.title)} - {_ascii_filename(self.authors[0][0])}"

    @property
    def author_sort(self) -> str:
        return " & ".join(sort for _, sort in self.authors)

    def chapters(self) -> list[tuple[str, list[str]]]:
        """(title, paragraphs) in reading order, parsed from `text`."""
        chapters: list[tuple[str, list[str]]] = []
        for block in self.text.strip().split("\n\n"):
            lines = block.strip().splitlines()
            if lines[0].startswith("## "):
                chapters.append((lines[0][3:].strip(), []))
                lines = lines[1:]
            if lines:
                chapters[-1][1].append(" ".join(line.strip() for line in lines))
        return chapters


def make_sample_library(dest: Path) -> Path:
    """Write a small Calibre-style library at dest and return dest.

    metadata.db plus one "Author/Title (id)/" folder per book holding its EPUB and metadata.opf,
    laid out as calibre does. dest must be new or an empty folder, so that a real library is
    never written into: anything else raises FileExistsError.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(
            f"{dest} already exists and is not an empty folder; "
            "the sample library needs a new or empty folder"
        )
    dest.mkdir(parents=True, exist_ok=True)
    sizes: dict[int, int] = {}
    for book in SAMPLE_BOOKS:
        folder = dest / book.path
        folder.mkdir(parents=True)
        data = _epub_bytes(book)
        (folder / f"{book.file_stem}.epub").write_bytes(data)
        (folder / "metadata.opf").write_text(_metadata_opf(book), encoding="utf-8")
        sizes[book.id] = len(data)
    _write_metadata_db(dest / "metadata.db", SAMPLE_BOOKS, sizes)
    return dest


def _ascii_filename(name: str) -> str:
    """Calibre names folders and files in ASCII: accents dropped, unsafe characters replaced."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    for char in '/\\:*?"<>|':
        ascii_name = ascii_name.replace(char, "_")
    return ascii_name.strip(" .") or "Unknown"


def _epub_bytes(book: SampleBook) -> bytes:
    """An EPUB 3 (with nav and NCX) built by ebooklib, repacked with fixed zip timestamps."""
    lang = _EPUB_LANG[book.language]
    eb = epub.EpubBook()
    eb.set_identifier(book.uuid)
    eb.set_title(book.title)
    eb.set_language(lang)
    for n, (name, sort) in enumerate(book.authors):
        # Not add_author(file_as=...): ebooklib would mark file-as with the marc:relators scheme.
        eb.add_author(name, uid=f"creator{n}")
        eb.add_metadata(None, "meta", sort, {"refines": f"#creator{n}", "property": "file-as"})
        eb.add_metadata(
            None,
            "meta",
            "aut",
            {"refines": f"#creator{n}", "property": "role", "scheme": "marc:relators"},
        )
    eb.add_metadata("DC", "identifier", f"urn:isbn:{book.isbn}", {"id": "isbn"})
    eb.add_metadata("DC", "publisher", book.publisher)
    eb.add_metadata("DC", "date", book.pubdate[:10])
    eb.add_metadata("DC", "description", _plain(book.comments))
    for tag in book.tags:
        eb.add_metadata("DC", "subject", tag)
    if book.series:  # as calibre writes it, and as EPUB 3 says it
        position = f"{book.series_index:g}"
        for value, attrs in (
            ("", {"name": "calibre:series", "content": book.series}),
            ("", {"name": "calibre:series_index", "content": f"{book.series_index}"}),
            (book.series, {"property": "belongs-to-collection", "id": "series"}),
            ("series", {"refines": "#series", "property": "collection-type"}),
            (position, {"refines": "#series", "property": "group-position"}),
        ):
            eb.add_metadata(None, "meta", value, attrs)

    css = epub.EpubItem(uid="style", file_name="style/book.css", media_type="text/css")
    css.content = _CSS.encode()
    eb.add_item(css)
    chapters = []
    for n, (title, paragraphs) in enumerate(book.chapters(), 1):
        chapter = epub.EpubHtml(
            uid=f"chapter_{n:02d}", title=title, file_name=f"chapter_{n:02d}.xhtml", lang=lang
        )
        body = "\n".join(f"<p>{escape(p, quote=False)}</p>" for p in paragraphs)
        chapter.content = f"<h1>{escape(title, quote=False)}</h1>\n{body}\n"
        chapter.add_item(css)
        eb.add_item(chapter)
        chapters.append(chapter)
    eb.toc = chapters
    eb.add_item(epub.EpubNcx())
    eb.add_item(epub.EpubNav())
    eb.spine = chapters  # the nav lives in the manifest; readers and indexers want only the text

    raw = io.BytesIO()
    epub.write_epub(raw, eb, {"mtime": _ADDED_DT, "raise_exceptions": True})
    return _repack(raw.getvalue())


def _repack(raw: bytes) -> bytes:
    """Same entries, same order (mimetype first, stored), but fixed timestamps and attributes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_ADDED_DT.timetuple()[:6])
            fixed.compress_type = info.compress_type
            fixed.create_system = 3
            fixed.external_attr = 0o100644 << 16
            dst.writestr(fixed, src.read(info))
    return out.getvalue()


def _plain(html: str) -> str:
    """Comments are stored as calibre stores them (HTML); the EPUB's description is plain text."""
    return " ".join(html.replace("<p>", " ").replace("</p>", " ").split())


_OPF_NS = 'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf"'


def _metadata_opf(book: SampleBook) -> str:
    """The per-book metadata.opf backup that calibre keeps next to the formats."""

    def e(value: str) -> str:
        return escape(value, quote=True)

    pubdate = book.pubdate.replace(" ", "T")
    link_map = json.dumps({name: "" for name, _ in book.authors}, ensure_ascii=False)
    lines = [
        "<?xml version='1.0' encoding='utf-8'?>",
        '<package xmlns="http://www.idpf.org/2007/opf" unique-identifier="uuid_id" version="2.0">',
        f"    <metadata {_OPF_NS}>",
        f'        <dc:identifier opf:scheme="calibre" id="calibre_id">{book.id}</dc:identifier>',
        f'        <dc:identifier opf:scheme="uuid" id="uuid_id">{book.uuid}</dc:identifier>',
        f"        <dc:title>{e(book.title)}</dc:title>",
    ]
    lines += [
        f'        <dc:creator opf:file-as="{e(sort)}" opf:role="aut">{e(name)}</dc:creator>'
        for name, sort in book.authors
    ]
    lines += [
        f"        <dc:date>{pubdate}</dc:date>",
        f"        <dc:description>{e(book.comments)}</dc:description>",
        f"        <dc:publisher>{e(book.publisher)}</dc:publisher>",
        f'        <dc:identifier opf:scheme="ISBN">{book.isbn}</dc:identifier>',
        f"        <dc:language>{book.language}</dc:language>",
    ]
    lines += [f"        <dc:subject>{e(tag)}</dc:subject>" for tag in book.tags]
    lines.append(f'        <meta name="calibre:author_link_map" content="{e(link_map)}"/>')
    if book.series:
        lines.append(f'        <meta name="calibre:series" content="{e(book.series)}"/>')
        lines.append(f'        <meta name="calibre:series_index" content="{book.series_index}"/>')
    lines += [
        f'        <meta name="calibre:timestamp" content="{ADDED.replace(" ", "T")}"/>',
        f'        <meta name="calibre:title_sort" content="{e(book.title_sort)}"/>',
        "    </metadata>",
        "</package>",
        "",
    ]
    return "\n".join(lines)


# The subset of calibre 6's schema (user_version 25) that a reader needs; same names and types.
_SCHEMA = """
CREATE TABLE books ( id      INTEGER PRIMARY KEY AUTOINCREMENT,
    title     TEXT NOT NULL DEFAULT 'Unknown' COLLATE NOCASE,
    sort      TEXT COLLATE NOCASE,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    pubdate   TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    series_index REAL NOT NULL DEFAULT 1.0,
    author_sort TEXT COLLATE NOCASE,
    isbn TEXT DEFAULT "" COLLATE NOCASE,
    lccn TEXT DEFAULT "" COLLATE NOCASE,
    path TEXT NOT NULL DEFAULT "",
    flags INTEGER NOT NULL DEFAULT 1,
    uuid TEXT,
    has_cover BOOL DEFAULT 0,
    last_modified TIMESTAMP NOT NULL DEFAULT "2000-01-01 00:00:00+00:00");
CREATE TABLE authors ( id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL COLLATE NOCASE,
    sort TEXT COLLATE NOCASE,
    link TEXT NOT NULL DEFAULT "",
    UNIQUE(name));
CREATE TABLE books_authors_link ( id INTEGER PRIMARY KEY,
    book INTEGER NOT NULL,
    author INTEGER NOT NULL,
    UNIQUE(book, author));
CREATE TABLE data ( id     INTEGER PRIMARY KEY,
    book   INTEGER NOT NULL,
    format TEXT NOT NULL COLLATE NOCASE,
    uncompressed_size INTEGER NOT NULL,
    name TEXT NOT NULL,
    UNIQUE(book, format));
CREATE TABLE identifiers  ( id     INTEGER PRIMARY KEY,
    book   INTEGER NOT NULL,
    type   TEXT NOT NULL DEFAULT "isbn" COLLATE NOCASE,
    val    TEXT NOT NULL COLLATE NOCASE,
    UNIQUE(book, type));
CREATE TABLE languages    ( id        INTEGER PRIMARY KEY,
    lang_code TEXT NOT NULL COLLATE NOCASE,
    UNIQUE(lang_code));
CREATE TABLE books_languages_link ( id INTEGER PRIMARY KEY,
    book INTEGER NOT NULL,
    lang_code INTEGER NOT NULL,
    item_order INTEGER NOT NULL DEFAULT 0,
    UNIQUE(book, lang_code));
CREATE TABLE series ( id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL COLLATE NOCASE,
    sort TEXT COLLATE NOCASE,
    UNIQUE (name));
CREATE TABLE books_series_link ( id INTEGER PRIMARY KEY,
    book INTEGER NOT NULL,
    series INTEGER NOT NULL,
    UNIQUE(book));
CREATE TABLE tags ( id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL COLLATE NOCASE,
    UNIQUE (name));
CREATE TABLE books_tags_link ( id INTEGER PRIMARY KEY,
    book INTEGER NOT NULL,
    tag INTEGER NOT NULL,
    UNIQUE(book, tag));
CREATE TABLE comments ( id INTEGER PRIMARY KEY,
    book INTEGER NOT NULL,
    text TEXT NOT NULL COLLATE NOCASE,
    UNIQUE(book));
CREATE TABLE publishers ( id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL COLLATE NOCASE,
    sort TEXT COLLATE NOCASE,
    UNIQUE(name));
CREATE TABLE books_publishers_link ( id INTEGER PRIMARY KEY,
    book INTEGER NOT NULL,
    publisher INTEGER NOT NULL,
    UNIQUE(book));
CREATE TABLE ratings ( id   INTEGER PRIMARY KEY,
    rating INTEGER CHECK(rating > -1 AND rating < 11),
    UNIQUE (rating));
CREATE TABLE books_ratings_link ( id INTEGER PRIMARY KEY,
    book INTEGER NOT NULL,
    rating INTEGER NOT NULL,
    UNIQUE(book, rating));
CREATE TABLE custom_columns (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    label    TEXT NOT NULL,
    name     TEXT NOT NULL,
    datatype TEXT NOT NULL,
    mark_for_delete   BOOL DEFAULT 0 NOT NULL,
    editable BOOL DEFAULT 1 NOT NULL,
    display  TEXT DEFAULT "{}" NOT NULL,
    is_multiple BOOL DEFAULT 0 NOT NULL,
    normalized BOOL NOT NULL,
    UNIQUE(label));
CREATE TABLE library_id ( id   INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL,
    UNIQUE(uuid));
"""


# Link and per-book tables: the columns that _write_metadata_db fills, in row order.
_BOOK_ROWS = {
    "books_authors_link": "book, author",
    "books_tags_link": "book, tag",
    "books_languages_link": "book, lang_code, item_order",
    "books_series_link": "book, series",
    "books_publishers_link": "book, publisher",
    "identifiers": "book, type, val",
    "comments": "book, text",
    "data": "book, format, uncompressed_size, name",
}


def _write_metadata_db(path: Path, books: tuple[SampleBook, ...], sizes: dict[int, int]) -> None:
    """Fill calibre's tables; ids of names follow the order in which they first appear."""

    def item_id(table: dict[str, int], name: str) -> int:
        return table.setdefault(name, len(table) + 1)

    authors: dict[str, int] = {}
    sorts: dict[str, str] = {}
    tags: dict[str, int] = {}
    languages: dict[str, int] = {}
    series: dict[str, int] = {}
    publishers: dict[str, int] = {}
    rows: dict[str, list[tuple[object, ...]]] = {table: [] for table in _BOOK_ROWS}
    for b in books:
        for name, sort in b.authors:
            sorts[name] = sort
            rows["books_authors_link"].append((b.id, item_id(authors, name)))
        for tag in b.tags:
            rows["books_tags_link"].append((b.id, item_id(tags, tag)))
        rows["books_languages_link"].append((b.id, item_id(languages, b.language), 0))
        if b.series:
            rows["books_series_link"].append((b.id, item_id(series, b.series)))
        rows["books_publishers_link"].append((b.id, item_id(publishers, b.publisher)))
        rows["identifiers"].append((b.id, "isbn", b.isbn))
        rows["comments"].append((b.id, b.comments))
        rows["data"].append((b.id, "EPUB", sizes[b.id], b.file_stem))

    with closing(sqlite3.connect(path)) as db:
        db.executescript(_SCHEMA)
        db.execute("PRAGMA user_version = 25")
        db.executemany(
            "INSERT INTO books (id, title, sort, timestamp, pubdate, series_index, author_sort,"
            " isbn, lccn, path, flags, uuid, has_cover, last_modified)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, '', '', ?, 1, ?, 0, ?)",
            [
                (b.id, b.title, b.title_sort, ADDED, b.pubdate, b.series_index, b.author_sort)
                + (b.path, b.uuid, ADDED)
                for b in books
            ],
        )
        db.executemany(
            "INSERT INTO authors (id, name, sort, link) VALUES (?, ?, ?, '')",
            [(i, name, sorts[name]) for name, i in authors.items()],
        )
        db.executemany("INSERT INTO tags (id, name) VALUES (?, ?)", _swap(tags))
        db.executemany("INSERT INTO languages (id, lang_code) VALUES (?, ?)", _swap(languages))
        db.executemany(
            "INSERT INTO series (id, name, sort) VALUES (?, ?, ?)",
            [(i, name, name) for name, i in series.items()],
        )
        db.executemany(
            "INSERT INTO publishers (id, name, sort) VALUES (?, ?, ?)",
            [(i, name, name) for name, i in publishers.items()],
        )
        for table, columns in _BOOK_ROWS.items():
            marks = ", ".join("?" * (columns.count(",") + 1))
            db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows[table])
        db.execute("INSERT INTO library_id (id, uuid) VALUES (1, ?)", (_LIBRARY_UUID,))
        db.commit()


def _swap(table: dict[str, int]) -> list[tuple[int, str]]:
    return [(i, name) for name, i in table.items()]


# ---------------------------------------------------------------------------------------------
# The books. Original texts written for this sample, in a plain informative style.
# ---------------------------------------------------------------------------------------------

_WHALING = """
## Before the Ships: The First Whalers

People hunted whales long before anyone built a ship for the purpose. Coastal communities in the
Arctic, in Japan, in Norway and along the Bay of Biscay all learned to take whales that came
close to shore. A stranded or drifting whale was a windfall for a village, providing meat, fat
for lamps and bones for tools and building. Because a single animal could feed many families
through a winter, the right to a beached whale was often written into local law and fiercely
disputed.

The Inuit and other Arctic peoples developed some of the most refined early whaling techniques.
Hunters in skin boats followed bowhead whales along the edge of the sea ice in spring, working
together in small crews. Their harpoons carried detachable heads attached to lines and inflated
sealskin floats, which tired the whale and kept it from diving deep. Every part of the animal
was used, and the hunt was surrounded by ceremony and shared rules about how the catch was
divided.

In Europe, the Basques were the first to turn whaling into an organised commercial trade. From
around the eleventh century they hunted right whales in the Bay of Biscay, watching from stone
towers on the headlands and launching rowing boats when a spout was sighted. As the whales near
home grew scarce, Basque crews sailed farther out, and by the sixteenth century they were
crossing the Atlantic to hunt in the Strait of Belle Isle, where they set up seasonal stations
on the coast of Labrador.

The right whale earned its name because it was the right whale to hunt. It swam slowly, lived
close to the coast and usually floated when killed, thanks to its thick layer of blubber. Those
same traits made it vulnerable, and populations of right whales fell sharply wherever hunters
found them. This pattern of discovery, intense hunting and local depletion would repeat itself
many times over the following centuries.

By the seventeenth century Dutch and English companies had taken up the trade in the icy waters
around Spitsbergen. They built shore stations where blubber was boiled down into oil in large
copper kettles. Competition between the nations was intense and occasionally violent, and the
fleets grew larger each season. The stage was set for whaling to become a global industry rather
than a coastal tradition.

## Nantucket and the Rise of American Whaling

Nantucket is a small, sandy island off the coast of Massachusetts with poor soil and few trees.
Its early English settlers learned shore whaling partly from the Wampanoag people who already
lived there, and they soon found that the sea offered a better living than farming. At first
they launched boats from the beach and towed their catch back to shore to be processed. Lookouts
on tall poles scanned the water for spouts through the winter months.

According to island tradition, a Nantucket captain caught the first sperm whale taken by the
colonists in the early eighteenth century, after his sloop was blown offshore in a gale. Whether
or not the story is exact, the sperm whale changed everything. Its oil burned brighter and
cleaner than that of other whales, and its head held a waxy substance called spermaceti that
fetched a high price. Nantucket merchants began fitting out ships to pursue sperm whales in deep
water, far from land.

As the voyages grew longer, the ships grew larger and began to carry equipment for processing
whales at sea. By the late eighteenth century Nantucket vessels were sailing into the South
Atlantic and then around Cape Horn into the Pacific. A single voyage could last three or four
years, and crews might not see home for most of that time. The island's population of Quaker
families became known for their discipline, their thrift and their wide knowledge of distant
oceans.

Crew members were not paid wages but received a share of the profits, called a lay. An
experienced captain might receive one sixteenth of the voyage's earnings, while a green hand on
his first trip might receive one two-hundredth or less. Deductions for clothing, tobacco and
other supplies bought on credit from the ship could leave a sailor with almost nothing at the
end of a voyage. The system spread the owners' risk across everyone aboard, which suited the
investors far better than it suited the men.

Nantucket's own geography eventually worked against it. A sandbar across the mouth of the
harbour made it difficult for large, fully loaded ships to enter, and in 1846 a great fire
destroyed much of the town's waterfront. The mainland port of New Bedford, with its deep harbour
and rail connections, took over as the centre of American whaling. By the middle of the
nineteenth century New Bedford was one of the wealthiest cities per person in the United States.

## Harpoons, Whaleboats and the Chase

A whaling ship did not attack a whale directly. Instead it carried several light, narrow
whaleboats hung from davits along its sides, ready to be lowered as soon as the lookout at the
masthead called out a sighting. Each boat held a crew of six: an officer who steered, a
harpooner in the bow and four oarsmen. The boats were fast and easy to turn, built of thin cedar
planks so that a crew could row or sail quietly up to a resting whale.

The harpoon was not meant to kill the whale but to fasten the boat to it. The harpooner threw
the iron from close range, and the barbed head lodged in the blubber while the line, coiled
carefully in tubs, ran out over the bow. A wounded whale might dive deep or race away across the
surface, dragging the boat behind it at high speed, a ride that sailors called a Nantucket
sleigh ride. The line could burn the wood of the bow or catch a man and pull him overboard, so
everyone in the boat had to stay alert.

Early harpoons had fixed barbs that often pulled free. In 1848 Lewis Temple, a Black blacksmith
working in New Bedford, introduced a toggling harpoon whose head turned sideways once it entered
the whale, locking it firmly in place. Temple's design was simple, strong and cheap to make, and
within a few years it became the standard harpoon of the American fleet. He never patented it,
and he did not grow rich from an invention that transformed the industry.

Once the whale was exhausted, the officer and harpooner changed places, and the officer used a
long lance to reach the whale's lungs and kill it. Later in the nineteenth century, shoulder
guns and bomb lances that fired explosive projectiles made this final stage faster but no less
dangerous. Whales sometimes turned on their pursuers, smashing boats with their flukes or jaws.
In 1820 a sperm whale rammed and sank the Nantucket ship Essex in the Pacific, an event that
later helped inspire the novel Moby-Dick.

After the kill the crew had to tow the carcass back to the ship, sometimes rowing for hours
against wind and current. The whale was chained alongside the hull, and the real labour of
turning an animal into a cargo began. The chase was dramatic, but most of a whaler's life was
spent waiting, watching the horizon, mending gear and enduring long stretches of boredom between
sightings.

## Whale Oil and the Try-Works

The main product of the whaling industry was oil, extracted from blubber, the thick layer of fat
beneath a whale's skin. To remove it, the crew cut a long strip of blubber that spiralled around
the body and hoisted it aboard with heavy tackle as the carcass turned in the water. This
process was called flensing. The strips were then chopped into smaller pieces, with the thinnest
slices known to sailors as bible leaves because they resembled the pages of a book.

In the middle of the deck stood the try-works, a brick furnace holding two or three large iron
pots. The blubber was boiled in these try-pots until the oil separated out, and the crisp
leftover scraps were thrown into the fire as fuel, so that the whale in effect helped to cook
itself. The work went on day and night until the whole animal was processed, filling the ship
with heat, smoke and a smell that could be noticed miles downwind. The oil was cooled and stored
in wooden casks in the hold.

Sperm whales produced two distinct products. Ordinary sperm oil came from the blubber, while the
large case in the whale's head held spermaceti, a liquid wax that hardened when cooled.
Spermaceti candles burned with a bright, steady flame and little smoke, and they became a luxury
item in Europe and America. The light of a standard spermaceti candle was even used for a time
as a unit for measuring the brightness of lamps.

Whale oil lit streetlamps, lighthouses and homes across the Western world, and it lubricated the
machinery of the early industrial age. Factories used it to soften wool and leather, and it was
an ingredient in soap. Baleen whales supplied another valuable material: the flexible plates in
their mouths, known as whalebone, which were used in corsets, umbrella ribs, buggy whips and
many other objects that today would be made of plastic or spring steel.

A rare and valuable substance called ambergris was sometimes found in the intestines of sperm
whales. This waxy, sweet-smelling material was prized by perfume makers because it helped scents
last longer on the skin. A lump of ambergris could be worth more than the oil from an entire
whale, and sailors searched carefully for it when processing a carcass. Its origin puzzled
naturalists for centuries before it was understood to form around the indigestible beaks of
squid.

## The Decline of Whaling

American whaling reached its peak in the 1840s and 1850s, when several hundred ships sailed from
New England ports. Its decline began soon afterwards, and for several reasons at once. In 1859
oil was struck in Pennsylvania, and kerosene distilled from petroleum quickly proved cheaper
than whale oil for lighting. Merchants who had once invested in whaling voyages turned instead
to railways, textile mills and the new oil industry.

The American Civil War struck the fleet directly. Confederate raiders such as the CSS Shenandoah
hunted Union whaleships in the Pacific and burned many of them. The Union navy bought dozens of
old whaling vessels, loaded them with stones and sank them in the approaches to Charleston
harbour in an attempt at blockade. Many shipowners sold or reflagged their vessels and never
returned to the trade.

Disaster followed in the Arctic. In 1871 more than thirty whaling ships were trapped by early
ice off the northern coast of Alaska and had to be abandoned. Remarkably, the crews, including
women and children who had sailed with their families, escaped in open boats to ships waiting
farther south, and no one died. But the loss of so many vessels in a single season was a blow
from which the New England fleet never recovered.

Whaling itself did not end; it changed form. In the 1860s the Norwegian Svend Foyn developed a
harpoon cannon firing a grenade-tipped harpoon, mounted on the bow of a fast steam-powered
catcher boat. This made it possible to hunt the swift blue and fin whales that sailing crews had
been unable to catch. In the twentieth century factory ships with slipways in the stern allowed
whales to be hauled aboard and processed on the open ocean, and the Antarctic became the centre
of a hunt far larger than anything the Nantucket captains had known.

The scale of modern whaling brought many species close to extinction. The International Whaling
Commission was founded in 1946 to manage whale stocks, but for decades its quotas were set too
high to prevent steep declines. Public concern grew during the 1970s, and in 1982 the commission
agreed to a moratorium on commercial whaling, which took effect in 1986. Some whale populations
have since recovered, and in many of the old whaling towns, boats now take tourists out to watch
whales rather than to hunt them.
"""

_NIGHT_SKY = """
## Getting Started Under the Stars

You do not need any equipment to begin exploring the night sky. Your eyes alone can show you
thousands of stars, several planets, the changing face of the Moon and, from a dark site, the
faint band of the Milky Way. The most useful things a beginner can bring outside are patience,
warm clothing and a simple star chart. Learning the sky is much like learning the streets of a
new town: a few landmarks come first, and everything else is found by reference to them.

Your eyes need time to adjust to the dark. The pupils widen within a minute or so, but the
chemical changes in the retina that give full night vision take twenty to thirty minutes. A
single glance at a bright phone screen or a white torch can undo much of that progress.
Experienced observers use a dim red light to read their charts, because the eye's night vision
is much less sensitive to red light than to white or blue.

Light pollution is the biggest obstacle for most people who live in towns and cities.
Streetlights and illuminated buildings scatter light into the atmosphere and wash out all but
the brightest stars. Even so, the Moon, the planets and the main constellations remain visible
from a city garden or balcony. If you can travel to the countryside on a clear, moonless night,
the difference is striking, and the sky suddenly seems crowded with faint stars.

A planisphere is an inexpensive and reliable tool for learning the constellations. It consists
of two discs that rotate against each other, and when you line up the date with the time, the
window shows which stars are above the horizon. Planispheres are made for particular ranges of
latitude, so choose one that matches where you live. Astronomy apps for phones do the same job
and can identify objects when you point the phone at the sky, but many observers prefer a paper
chart because it does not spoil their dark adaptation.

Keep a simple notebook of what you see. Write down the date, the time, the weather and the
objects you found, and sketch anything that catches your interest. Over the weeks you will
notice the constellations shifting westward at the same hour of the evening, the Moon moving
through its phases and the planets slowly changing position. These patterns, which ancient
astronomers tracked with great care, become familiar surprisingly quickly.

## Finding the Constellations

A constellation is a region of the sky, traditionally associated with a pattern of stars that
suggested a figure to people in the past. Many of the names we use today come from Greek and
Roman mythology, while others were added by European navigators who charted the southern sky. In
1922 the International Astronomical Union settled on an official list of eighty-eight
constellations, and a few years later it fixed their boundaries so that every point in the sky
belongs to exactly one of them.

The stars in a constellation usually have no physical connection to each other. They simply lie
in roughly the same direction as seen from Earth, and some are many times farther away than
their neighbours. Smaller, easily recognised patterns within or across constellations are called
asterisms. The most famous asterism in the northern hemisphere is the Plough, also known as the
Big Dipper, which forms part of the larger constellation Ursa Major, the Great Bear.

The Big Dipper is a good starting point because it can be found on almost any clear night from
mid-northern latitudes. The two stars at the end of its bowl are called the pointers. Follow the
line between them upward, about five times the distance that separates them, and you arrive at
Polaris, the North Star. Polaris is not especially bright, but it lies very close to the north
celestial pole, so it stays almost fixed while the rest of the sky appears to turn around it
during the night.

Across the pole from the Big Dipper lies Cassiopeia, a distinctive W or M shape of five stars.
In winter evenings the hunter Orion dominates the southern sky, recognisable by the three stars
of his belt, the reddish star Betelgeuse at one shoulder and the bright blue-white Rigel at one
foot. In summer the three bright stars Vega, Deneb and Altair form the Summer Triangle high
overhead. Observers in the southern hemisphere use the Southern Cross and the two bright pointer
stars of Centaurus to locate the south celestial pole, which has no bright star of its own.

The Sun, Moon and planets always travel along a narrow band of the sky called the ecliptic. The
constellations along this band are known as the zodiac, and they include Taurus, Leo, Scorpius
and Sagittarius. Because Earth orbits the Sun, different constellations are visible at night in
different seasons: the stars behind the Sun are hidden in daylight, while those on the opposite
side of the sky are seen at midnight. Over a year the whole sequence passes by, which is why
star charts are always arranged by month.

## The Moon and Its Phases

The Moon is the easiest and most rewarding object for a new observer. It has no light of its own
and shines only by reflecting sunlight. At any moment half of the Moon is lit by the Sun, but as
the Moon orbits Earth we see different portions of that lit half. These changing views are the
phases, and a complete cycle from one new moon to the next takes about twenty-nine and a half
days.

At new moon the Moon lies roughly between Earth and the Sun, its dark side faces us, and it is
lost in the Sun's glare. A day or two later a thin crescent appears low in the western sky just
after sunset. Night by night the lit part grows, or waxes, through first quarter, when we see
half of the disc illuminated, and then through the gibbous phase to full moon. At full moon the
Moon is opposite the Sun in the sky, so it rises at sunset and stays up all night.

After full moon the sequence runs in reverse. The Moon wanes through a gibbous phase to last
quarter and then to a thin crescent visible only before dawn in the eastern sky. A simple rule
helps to tell the phases apart in the northern hemisphere: if the right side is lit, the Moon is
waxing, and if the left side is lit, it is waning. In the southern hemisphere the Moon appears
the other way up, so the rule is reversed.

The Moon always keeps the same face towards Earth, because its rotation has become locked to its
orbit. The dark patches you can see with the naked eye are the maria, vast plains of solidified
lava that early observers mistook for seas. The best time to look at craters and mountains
through binoculars or a telescope is not at full moon but near the quarter phases. Along the
terminator, the line between day and night on the Moon, sunlight strikes the surface at a low
angle and long shadows make the relief stand out clearly.

Look carefully at a thin crescent Moon and you may see the rest of the disc glowing faintly.
This is earthshine, sunlight reflected from Earth onto the Moon's night side and back to our
eyes. Occasionally the Moon passes through Earth's shadow during a full moon, producing a lunar
eclipse in which the Moon often turns a deep copper red. Unlike eclipses of the Sun, lunar
eclipses are completely safe to watch with the naked eye.

## Wandering Stars: The Planets

The ancient Greeks called the planets wanderers because, unlike the stars, they move from night
to night against the background constellations. Five planets are easy to see with the naked eye:
Mercury, Venus, Mars, Jupiter and Saturn. They always appear somewhere along the ecliptic, so if
you see an unusually bright point of light in the band of the zodiac that is missing from your
star chart, it is very probably a planet. A useful clue is that planets usually shine with a
steady light, while stars twinkle more noticeably.

Venus is the brightest object in the sky after the Sun and the Moon. Because its orbit lies
inside Earth's, it never strays far from the Sun and is seen either in the west after sunset or
in the east before sunrise, which is why it is often called the evening star or the morning
star. Through a small telescope Venus shows phases like the Moon, an observation that Galileo
used as evidence that the planets orbit the Sun. Mercury is also an inner planet, but it stays
so close to the Sun that it can be glimpsed only low in the twilight for a few weeks at a time.

Mars is recognisable by its orange-red colour. Its brightness varies greatly, because the
distance between Earth and Mars changes a great deal as the two planets move around their
orbits. Roughly every twenty-six months Earth overtakes Mars, and for a few weeks Mars appears
to move backwards against the stars. This apparent retrograde motion puzzled early astronomers
and was finally explained when it was understood that Earth is itself a moving planet.

Jupiter is usually the second brightest planet and a wonderful target for binoculars. Hold them
steady, perhaps by leaning against a wall, and you may see up to four tiny points of light lined
up beside the planet. These are the Galilean moons, Io, Europa, Ganymede and Callisto, and their
positions change from one night to the next as they orbit Jupiter. A small telescope also shows
the dark cloud belts that cross the planet's disc.

Saturn looks like a modest yellowish star to the naked eye, but even a small telescope at
moderate magnification reveals its rings, a sight that delights almost everyone who sees it for
the first time. The tilt of the rings as seen from Earth changes over a cycle of about fifteen
years, and when they are presented edge-on they nearly vanish from view. The outer planets
Uranus and Neptune are too faint for the unaided eye in most conditions, but they can be found
with binoculars and a detailed chart.

## Choosing a First Telescope

Many experienced observers advise beginners to start with a pair of binoculars rather than a
telescope. Binoculars are inexpensive, easy to carry and simple to point, and their wide field
of view makes it easy to find your way among the stars. A pair labelled 7x50 or 10x50 is a good
choice: the first number is the magnification and the second is the diameter of each front lens
in millimetres. With binoculars you can explore the craters of the Moon, the moons of Jupiter,
star clusters such as the Pleiades and the glowing Orion Nebula.

When you do buy a telescope, the most important figure is its aperture, the diameter of the main
lens or mirror. A larger aperture gathers more light, which lets you see fainter objects and
finer detail. Be wary of telescopes advertised by their magnification. Any telescope can be
pushed to high magnification with a short eyepiece, but the image becomes dim and blurred, and
in practice the most useful views come at low and medium power.

Telescopes come in three main designs. Refractors use a lens at the front of the tube, need
little maintenance and give sharp views of the Moon and planets. Reflectors use a curved mirror
at the bottom of the tube and offer the most aperture for the money, though their mirrors
occasionally need to be realigned. Catadioptric telescopes combine lenses and mirrors in a
short, portable tube. A popular first choice is the Dobsonian, a reflector on a simple rocking
base that is easy to set up and move by hand.

The mount matters as much as the optics. A shaky mount makes the image jump with every touch and
can ruin an otherwise good telescope. Altazimuth mounts move up and down and left and right,
which is intuitive, while equatorial mounts are aligned with Earth's axis so that a single
motion follows a star across the sky. Computerised mounts can find objects automatically, but it
is worth learning to find a few targets yourself, because that knowledge of the sky will stay
with you.

Give the telescope time to cool to the outside temperature before observing, since warm air
inside the tube blurs the image. Begin with a low-power eyepiece to find your target, then
switch to a higher power if the air is steady. Above all, never point a telescope or binoculars
at the Sun without a proper certified solar filter fitted over the front. Concentrated sunlight
can cause permanent eye damage in an instant, and no view is worth that risk.
"""

_PAIN_AU_LEVAIN = """
## Qu'est-ce que le levain ?

Le levain est un mélange vivant de farine et d'eau dans lequel se développent des levures
sauvages et des bactéries lactiques. Ces micro-organismes sont naturellement présents sur les
grains de céréales, dans la farine et dans l'air de la cuisine. Lorsqu'on leur offre de la
nourriture et de l'humidité, ils se multiplient et font fermenter la pâte. Les levures
produisent du gaz carbonique qui fait lever le pain, tandis que les bactéries produisent des
acides qui lui donnent son goût légèrement acidulé.

Pendant des millénaires, tout le pain levé a été fabriqué de cette manière. La levure de
boulanger, cultivée et vendue en cubes ou en sachets, ne s'est répandue qu'à partir du
dix-neuvième siècle, car elle permettait de produire plus vite un pain plus régulier. Le pain au
levain demande davantage de temps et d'attention, mais beaucoup de boulangers et d'amateurs y
reviennent aujourd'hui pour sa saveur plus complexe, sa mie plus humide et sa meilleure
conservation.

Créer un levain chez soi est simple. On mélange dans un bocal propre des quantités égales de
farine complète ou de farine de seigle et d'eau tiède non chlorée, puis on laisse reposer le
bocal à température ambiante, couvert sans être fermé hermétiquement. Chaque jour, on retire une
partie du mélange et on le nourrit avec de la farine et de l'eau fraîches. Au bout de cinq à dix
jours, le levain double de volume quelques heures après chaque repas, se couvre de bulles et
dégage une odeur agréable de yaourt ou de pomme.

Cette opération de nourrissage s'appelle le rafraîchi. Un levain utilisé régulièrement se
rafraîchit une ou deux fois par jour et se conserve à température ambiante. Si l'on ne fait du
pain qu'une fois par semaine, on peut garder le levain au réfrigérateur, où son activité
ralentit fortement, et le rafraîchir la veille de la panification. Un levain bien entretenu peut
vivre des années, et certaines boulangeries utilisent le même depuis plusieurs générations.

On reconnaît qu'un levain est prêt à l'emploi lorsqu'il a atteint son pic d'activité,
c'est-à-dire lorsqu'il a bien gonflé et que sa surface commence tout juste à se bomber ou à
retomber. Un petit test consiste à en déposer une cuillerée dans un verre d'eau : s'il flotte,
il contient assez de gaz pour faire lever la pâte. Un levain trop jeune donnera un pain dense,
tandis qu'un levain trop mûr rendra la pâte collante et très acide.

## Choisir sa farine

En France, les farines sont classées par type, selon leur taux de cendres, c'est-à-dire la
quantité de minéraux qui reste après avoir brûlé un échantillon de farine. Plus le type est
élevé, plus la farine contient de son et de germe, et plus elle est complète. La farine T45 est
très blanche et réservée surtout à la pâtisserie. La T55 et la T65 sont les farines courantes de
la boulangerie, la T80 est dite bise, la T110 semi-complète et la T150 intégrale.

Pour un premier pain au levain, la farine T65 est un excellent choix, car elle offre un bon
équilibre entre la force boulangère et le goût. On peut y ajouter une part de farine T80 ou T110
pour obtenir une mie plus savoureuse et une couleur plus soutenue. Les farines complètes
absorbent davantage d'eau et donnent une pâte moins élastique, car les particules de son coupent
le réseau de gluten. Il faut donc souvent augmenter légèrement l'hydratation lorsqu'on augmente
la proportion de farine complète.

Le gluten est le réseau de protéines qui se forme lorsque la farine de blé est mélangée à l'eau
et travaillée. Il rend la pâte extensible et élastique, et il retient le gaz produit par la
fermentation, ce qui permet au pain de lever. La teneur en protéines d'une farine donne une
indication de sa force : une farine riche en protéines supporte de longues fermentations et des
pâtes très hydratées, tandis qu'une farine faible s'affaisse plus facilement.

La farine de seigle se comporte très différemment de la farine de blé. Elle forme peu de gluten,
mais elle contient des pentosanes qui retiennent beaucoup d'eau et donnent une pâte collante et
dense. Elle fermente vite et nourrit très bien le levain, c'est pourquoi on l'utilise souvent
pour le démarrer. Une petite part de seigle dans un pain de blé apporte une saveur profonde et
une mie qui reste fraîche plus longtemps. L'épeautre, céréale ancienne apparentée au blé, donne
un pain parfumé mais une pâte plus fragile, qu'il faut pétrir avec douceur.

L'hydratation d'une pâte est le rapport entre le poids de l'eau et celui de la farine. Une pâte
à soixante-cinq pour cent d'hydratation est ferme et facile à façonner, tandis qu'une pâte à
quatre-vingts pour cent est souple et collante, mais donne une mie plus ouverte avec de grands
alvéoles. Il vaut mieux commencer autour de soixante-dix pour cent et augmenter peu à peu à
mesure que les gestes deviennent plus sûrs. Chaque farine réagit différemment, et l'expérience
apprend à ajuster la quantité d'eau.

## Pétrissage, pointage et façonnage

Une recette simple de pain au levain commence par mélanger la farine et la plus grande partie de
l'eau, puis par laisser reposer le mélange pendant une demi-heure à une heure. Ce repos, appelé
autolyse, permet à la farine de s'hydrater et au gluten de commencer à se former sans effort. On
ajoute ensuite le levain, environ vingt pour cent du poids de la farine, puis le sel, à raison
d'environ deux pour cent, avec le reste de l'eau.

Le pétrissage développe le réseau de gluten. On peut pétrir à la main sur le plan de travail
pendant une dizaine de minutes, mais beaucoup de boulangers amateurs préfèrent une méthode plus
douce. Elle consiste à effectuer une série de rabats pendant la première fermentation : toutes
les trente minutes environ, on étire un côté de la pâte vers le haut et on le replie sur
elle-même, en tournant le récipient pour traiter les quatre côtés. Trois ou quatre séries
suffisent pour obtenir une pâte lisse et élastique.

La première fermentation s'appelle le pointage. Elle dure généralement de trois à six heures à
température ambiante, selon la vigueur du levain et la chaleur de la pièce. Pendant ce temps, la
pâte gagne en volume, devient plus légère et se couvre de petites bulles. Il vaut mieux se fier
à l'aspect de la pâte qu'à l'horloge : un pointage trop court donne un pain serré, un pointage
trop long une pâte qui s'étale et manque de tenue.

Vient ensuite le façonnage. On renverse délicatement la pâte sur un plan de travail légèrement
fariné, on la préfaçonne en boule et on la laisse détendre une vingtaine de minutes. On lui
donne alors sa forme définitive, ronde pour une boule ou allongée pour un bâtard, en créant une
tension à la surface sans chasser tout le gaz. La pâte façonnée est placée, soudure vers le
haut, dans un banneton fariné ou dans un saladier garni d'un linge.

La seconde fermentation, ou apprêt, peut se faire à température ambiante pendant une à trois
heures, ou bien au réfrigérateur pendant toute une nuit. L'apprêt au froid présente deux
avantages : il développe davantage d'arômes et il rend la pâte plus ferme, donc plus facile à
inciser et à enfourner. Il permet aussi d'organiser son temps, puisqu'on peut façonner le soir
et cuire le pain le lendemain matin.

## La cuisson

La cuisson transforme la pâte en pain. Un four domestique doit être préchauffé longtemps, au
moins quarante-cinq minutes, à une température de deux cent quarante à deux cent cinquante
degrés. Beaucoup d'amateurs cuisent leur pain dans une cocotte en fonte préchauffée avec le
four. La cocotte emprisonne la vapeur qui s'échappe de la pâte et reproduit en partie les
conditions d'un four de boulanger.

La vapeur est essentielle au début de la cuisson. Elle garde la surface de la pâte souple
pendant les premières minutes, ce qui permet au pain de se développer pleinement avant que la
croûte ne durcisse. Sans cocotte, on peut créer de la vapeur en versant un verre d'eau dans une
lèchefrite chaude placée au bas du four au moment d'enfourner. Après une vingtaine de minutes,
on retire le couvercle ou on ouvre brièvement la porte pour laisser la croûte sécher et dorer.

Juste avant d'enfourner, on incise la surface du pain avec une lame de rasoir ou un couteau très
tranchant. Cette entaille, que les boulangers appellent la grigne, guide l'expansion du pain
dans le four et l'empêche de se déchirer au hasard. Une seule incision profonde et légèrement
inclinée donne une belle oreille sur un bâtard, tandis qu'une boule peut recevoir une croix, un
carré ou un motif décoratif.

La couleur et le goût de la croûte viennent principalement de la réaction de Maillard et de la
caramélisation des sucres à la surface de la pâte. Une croûte bien cuite, d'un brun profond,
apporte beaucoup de saveur, et il ne faut pas craindre de prolonger un peu la cuisson. Au total,
un pain d'environ un kilo cuit en quarante à cinquante minutes. Lorsqu'on tape sous le pain avec
le doigt, il doit sonner creux.

Il faut ensuite laisser refroidir le pain sur une grille pendant au moins une heure avant de le
trancher. La cuisson se poursuit à l'intérieur pendant ce temps, et une mie coupée trop tôt
reste collante. Le pain au levain se conserve plusieurs jours enveloppé dans un torchon ou placé
dans une boîte à pain, la mie tournée contre la planche. On peut aussi le trancher et le
congeler, puis le griller directement au sortir du congélateur.
"""

_SMALL_GARDENS = """
## Reading Your Light

Light is the first thing to assess before you buy a single pot or packet of seeds. Most fruiting
vegetables, such as tomatoes, peppers and beans, need at least six hours of direct sunshine a
day to crop well. Leafy crops like lettuce, spinach and chard, along with herbs such as parsley
and mint, will cope with three or four hours. Spend a day noting when the sun reaches each part
of your balcony, windowsill or yard, because the pattern is often different from what you
expect.

In the northern hemisphere a south-facing space receives the most sun, while a north-facing one
may receive almost none in winter. East-facing spots enjoy gentle morning light and stay cool in
the afternoon, which suits salad leaves and many flowers. West-facing spots catch the hot
afternoon and evening sun. Nearby buildings, trees and balcony railings can cast shadows that
move through the seasons, so a place that is bright in June may be shaded in April.

Small spaces often have their own microclimates. A sheltered courtyard with brick walls can be
several degrees warmer than an open garden, because the walls absorb heat during the day and
release it at night. A high balcony, on the other hand, may be exposed to strong winds that dry
out soil and snap tall stems. Windbreaks such as trellis panels, woven screens or a row of tough
shrubs in troughs can make a surprising difference to what will grow.

Before you fill a balcony or roof terrace with containers, check how much weight it can safely
carry. Wet soil is heavy, and a large pot can weigh well over a hundred kilograms once it has
been watered. Place the heaviest containers near walls or over supporting beams rather than in
the middle of the floor, and ask your landlord or building manager if you are unsure.
Lightweight potting mixes and plastic or fabric containers help to keep the load down.

## Containers and Soil

Almost anything that holds soil and drains freely can be used as a container. Terracotta pots
are attractive and allow roots to breathe, but they dry out quickly and can crack in hard
frosts. Plastic pots are light, cheap and hold moisture longer. Fabric grow bags are easy to
store when empty and encourage healthy, fibrous roots. Whatever you choose, make sure there are
drainage holes in the bottom, because roots sitting in waterlogged soil quickly rot.

Bigger containers are easier to look after than small ones. A larger volume of soil holds more
water and nutrients and protects roots from sudden changes in temperature. As a rough guide, a
single tomato plant needs a pot of at least twenty litres, while herbs and salad leaves can grow
in troughs about fifteen centimetres deep. Many beginners choose pots that are too small and
then struggle with plants that wilt every afternoon.

Do not fill containers with ordinary garden soil. In a pot it compacts into a dense mass that
drains poorly and leaves little room for air around the roots. Use a good-quality potting
compost instead, which is designed to stay open and light. Peat-free composts made from
materials such as composted bark, wood fibre and coir are now widely available and perform well.
Mixing in some grit or perlite improves drainage for herbs from dry climates, such as rosemary
and thyme.

Watering is the most important routine task in a container garden. Pots dry out much faster than
beds in the ground, and in hot weather they may need watering every day or even twice a day.
Water thoroughly until it runs out of the drainage holes, then wait until the top few
centimetres of compost feel dry before watering again. Self-watering containers with a reservoir
in the base, or simple drip systems on a timer, can save a great deal of effort during summer
holidays.

Plants in containers rely on you for their food, because the nutrients in fresh compost are used
up within a few weeks. Once plants are growing strongly, feed them regularly with a liquid
fertiliser diluted in the watering can. Leafy crops benefit from a feed rich in nitrogen, while
fruiting plants such as tomatoes and strawberries prefer one higher in potassium once they begin
to flower. Refreshing the top layer of compost each spring keeps long-lived plants such as herbs
and shrubs in good health.

## Growing Upwards

When floor space is limited, the answer is to grow upwards. Walls, fences and railings can
support climbing plants, shelves of pots and hanging planters, multiplying the growing area many
times over. Vertical gardening also lifts plants towards the light, which is especially helpful
in courtyards hemmed in by tall buildings. A sunny wall can carry more produce than a small bed
on the ground beneath it.

Many vegetables climb naturally. Runner beans and climbing French beans twine around canes or
strings and can reach two metres or more in a single season. Peas cling with tendrils to netting
or twiggy sticks. Cucumbers, small squashes and even some melons can be trained up a sturdy
trellis, with heavier fruits supported in slings made from old tights or netting. Growing them
vertically also keeps fruit off the ground, away from slugs and rot.

Wall-mounted planters come in many forms, from fabric pockets and modular plastic units to
recycled wooden pallets fixed upright and lined with landscape fabric. These suit shallow-rooted
plants such as strawberries, lettuce, herbs and trailing flowers. Because small pockets of
compost dry out very quickly, vertical planters need frequent watering, and a drip line running
along the top of the wall is often worth installing. Plants at the top will dry out faster than
those at the bottom, so place the most drought-tolerant ones highest.

Hanging baskets make use of space that would otherwise be empty. Trailing tomatoes, strawberries
and nasturtiums all grow well in baskets, as do many herbs. Line the basket with a material that
holds moisture and mix a little slow-release fertiliser into the compost when planting. Hang
baskets where they will not block paths or doors, and make sure the brackets are strong, because
a wet basket is heavier than it looks.

## What to Grow and When

The best crops for small spaces are those that give a large harvest from a small area or that
taste far better fresh than shop-bought. Salad leaves are a perfect example: sow a pinch of seed
in a trough and you can begin cutting young leaves within four to six weeks, and many varieties
will regrow after cutting. Herbs such as basil, chives, parsley and mint are expensive to buy in
small packets but easy to grow on a windowsill or balcony. Mint spreads aggressively, so always
give it a pot of its own.

Cherry tomatoes are one of the most rewarding crops for a sunny balcony. Choose compact bush
varieties for smaller pots, or cordon varieties trained up a cane if you have height to spare.
Chillies and sweet peppers also grow well in containers and look ornamental when they fruit.
Dwarf varieties of beans, peas and even potatoes have been bred for patio growing, and a deep
bag of early potatoes can produce a meal or two of new potatoes in early summer.

Succession sowing keeps harvests coming. Instead of sowing a whole packet of lettuce or radish
at once, sow a short row every two or three weeks from spring to late summer. That way you
harvest a steady supply rather than a glut followed by nothing. As soon as one crop finishes,
clear the container, refresh the compost and sow something else, such as winter salad leaves or
spring onions.

Do not forget the wildlife that will help your garden. A few pots of flowers such as lavender,
marigolds, borage and nasturtiums attract bees, hoverflies and other pollinators, which improve
the harvest of beans, tomatoes and strawberries. Hoverfly larvae also eat aphids, reducing the
need for sprays. Even a tiny balcony garden, planted with a little thought, can become a
valuable stopping place for insects in a city and a source of fresh food for the kitchen.
"""

SAMPLE_BOOKS: tuple[SampleBook, ...] = (
    SampleBook(
        id=1,
        title="A Short History of Whaling",
        title_sort="Short History of Whaling, A",
        authors=(("Ruth Ellery", "Ellery, Ruth"), ("Samuel J. Pratt", "Pratt, Samuel J.")),
        language="eng",
        tags=("History", "Whaling", "Maritime"),
        isbn="9781999900014",
        uuid="0280682c-063c-5314-86d4-23979d0b5daf",
        pubdate="2019-05-14 00:00:00+00:00",
        publisher="Harbour Lantern Press",
        comments="<p>From Basque shore stations to Nantucket whaleships and Antarctic factory "
        "ships: how whales were hunted, what their oil was used for, and why the trade "
        "declined.</p>",
        text=_WHALING,
    ),
    SampleBook(
        id=2,
        title="The Night Sky for Beginners",
        title_sort="Night Sky for Beginners, The",
        authors=(("Zoë Brontë-Müller", "Brontë-Müller, Zoë"),),
        language="eng",
        tags=("Astronomy", "Science", "Beginners"),
        isbn="9781999900021",
        uuid="ed84dc87-21a0-5c28-b185-fe90c4eedb74",
        pubdate="2021-09-02 00:00:00+00:00",
        publisher="Stargazer Books",
        comments="<p>A friendly first guide to the constellations, the phases of the Moon, the "
        "bright planets and choosing binoculars or a first telescope.</p>",
        text=_NIGHT_SKY,
    ),
    SampleBook(
        id=3,
        title="Le pain au levain",
        title_sort="pain au levain, Le",
        authors=(("Hélène Dufresne", "Dufresne, Hélène"),),
        language="fra",
        tags=("Cuisine", "Boulangerie"),
        isbn="9791099900036",
        uuid="3554be8f-fe18-53f8-8205-bf9f2e793ef3",
        pubdate="2018-03-20 00:00:00+00:00",
        publisher="Éditions du Fournil",
        comments="<p>Créer et entretenir un levain, choisir sa farine, pétrir, façonner et cuire "
        "un pain au levain à la maison.</p>",
        text=_PAIN_AU_LEVAIN,
    ),
    SampleBook(
        id=4,
        title="Gardening in Small Spaces",
        title_sort="Gardening in Small Spaces",
        authors=(
            ("Tobias Fenwick", "Fenwick, Tobias"),
            ("Zoë Brontë-Müller", "Brontë-Müller, Zoë"),
        ),
        language="eng",
        tags=("Gardening", "Home", "Beginners"),
        isbn="9781999900045",
        uuid="633d4f21-4145-5bca-b8f4-16b35cf4b232",
        pubdate="2023-04-11 00:00:00+00:00",
        publisher="Windowbox Press",
        comments="<p>Growing herbs, salads and vegetables on balconies, windowsills and patios: "
        "light, containers, compost, watering and growing upwards.</p>",
        text=_SMALL_GARDENS,
        series="Home Skills",
        series_index=2.5,
    ),
)
