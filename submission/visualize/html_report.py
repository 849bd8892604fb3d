"""A self-contained HTML page: every image is a base64 data URI and the style sheet is inline, so the one file can be
mailed, copied off the grader, or opened offline. Nothing in it points outside the file."""
import base64
import dataclasses
import html

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; margin-top: 0.3em; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
img.plot { image-rendering: auto; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 0.3em 0.8em; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }
.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
"""

MIME = {"png": "image/png", "gif": "image/gif"}


@dataclasses.dataclass
class Picture:
    """One image of the report: its file name in the output directory, its bytes, and a caption for a person."""
    filename: str
    data: bytes
    caption: str
    plot: bool = False         # a matplotlib plot (smooth scaling) rather than pixel tiles (nearest neighbour)

    def data_uri(self) -> str:
        mime = MIME[self.filename.rsplit(".", 1)[-1].lower()]
        return f"data:{mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclasses.dataclass
class Section:
    title: str
    pictures: list = dataclasses.field(default_factory=list)
    table: list = None          # rows of cells; the first row is the header
    text: str = None            # shown preformatted (a config file)
    notes: list = dataclasses.field(default_factory=list)   # what is unavailable, and why


def _cell(value, header: bool) -> str:
    tag = "th" if header else "td"
    if isinstance(value, float):
        return f'<{tag} class="number">{value:.4f}</{tag}>'
    return f"<{tag}>{html.escape(str(value))}</{tag}>"


def render_section(section: Section) -> str:
    parts = [f"<section><h2>{html.escape(section.title)}</h2>"]
    for note in section.notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    for picture in section.pictures:
        css = ' class="plot"' if picture.plot else ""
        parts.append(f'<figure><img{css} src="{picture.data_uri()}" alt="{html.escape(picture.caption)}">'
                     f"<figcaption>{html.escape(picture.caption)} <code>{html.escape(picture.filename)}</code>"
                     f"</figcaption></figure>")
    if section.table:
        rows = [f"<tr>{''.join(_cell(c, i == 0) for c in row)}</tr>" for i, row in enumerate(section.table)]
        parts.append(f"<table>{''.join(rows)}</table>")
    if section.text is not None:
        parts.append(f"<pre>{html.escape(section.text)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def render_report(title: str, summary: list, sections: list) -> str:
    """The whole page: a title, a few summary lines (source, dataset, date), then the sections in order."""
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in summary)
    body = "\n".join(render_section(s) for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>{html.escape(title)}</h1><ul>{lines}</ul>\n{body}\n</body></html>\n")
