"""The new text of a reply: quoted earlier messages and signatures trimmed, for the digest.

Only the author's own words belong in a digest, yet replies carry the whole thread below them.
The rule that matters most: never lose text that is not a quote or a signature. So the module
cuts only at unmistakable markers (an attribution line, an "Original Message" separator, an
Outlook header block, a "-- " signature, a list footer), trims quotes and mobile signatures
only at the end, and keeps everything when unsure. Pure: no I/O.
"""

from __future__ import annotations

import re

_I = re.IGNORECASE
_BIDI_MARKS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_BIDI = re.compile(f"[{_BIDI_MARKS}]")  # RTL clients wrap lines in these

QUOTE = re.compile(r"^\s*>")  # "> text", ">> text", " > text"
SIG_DELIMITER = re.compile(r"^--\s*$")  # RFC 3676 "-- "; many clients drop the trailing space
RULE = re.compile(r"^\s*([-_=*~#+])\1+\s*$")  # a line drawn with one repeated character
TRACKER_DOT = re.compile(r"^\s*\u1427\s*$")  # "ᐧ": the dot that Gmail tracking add-ons append

# A verb that ends an attribution line; these rows are the verb just before the colon.
_WROTE_LAST = "|".join(
    [
        r"wrote|writes",  # English (Gmail, Apple Mail, Thunderbird, Android, iOS)
        r"a\s+écrit|a\s+ecrit",  # French "Le ..., X a écrit :"
        r"geschrieben|schrieb",  # German "Am ... hat X geschrieben:", "X via Y <a@b> schrieb:"
        r"schreef|skrev",  # Dutch, Scandinavian "X skrev:"
        r"het\s+volgende\s+geschreven",  # Dutch "Op ... heeft X het volgende geschreven:"
        r"escribió|escreveu|ha\s+scritto|scrisse",  # Spanish, Portuguese, Italian
        r"kirjoitti|yazdı|έγραψε",  # Finnish, Turkish, Greek
        r"napisał(?:a|\(a\))?|napsal(?:a|\(a\))?",  # Polish, Czech
        r"написал(?:а|\(а\))?|написав|пише",  # Russian, Ukrainian
    ]
)
_WROTE_END = re.compile(
    rf"(?:(?<!\w)(?:{_WROTE_LAST})|写道|寫道|כתב(?:ה)?)\s*(?:[:：]|-{{2,}})\s*$", _I
)  # CJK and Hebrew verbs take no word boundary; Zoho ends "wrote ----" instead of ":"
_WROTE_FIRST = re.compile(
    r"(?<!\w)(?:schrieb|schreef|skrev|wrote\s+on|schrieb\s+am)\s[^:：]{1,100}[:：]\s*$", _I
)  # German "Am ... schrieb X <a@b>:", Dutch "schreef", Scandinavian "skrev", "X wrote on DATE:"
# Gmail in Chinese, Japanese, Russian... names no verb: "2016/1/2 20:45 X <a@b>:"
_DATE_EMAIL = re.compile(r"\d{4}.{1,80}<[^<>@\s]+@[^<>\s]+>\s*[:：]\s*$")
# The word an attribution starts with, when it is wrapped over up to three lines: English,
# French, German, Dutch, Spanish, Italian, Portuguese, Nordic, Czech, Polish, Chinese, a date.
_INTRO = re.compile(r"^[\s>*-]*(?:(?:On|At|Le|Am|Op|El|Il|Em|Den|Dne|Dnia|W\s+dniu)\b|在|\d)", _I)
_SHORT_NAME_WROTE = re.compile(rf"^\s*\S+(?:\s+\S+){{0,3}}\s+(?:{_WROTE_LAST})\s*[:：]\s*$", _I)

# A separator after which everything is the earlier message (reply or forward), per client/language.
SEPARATOR = re.compile(
    r"^[\s>*]*-{2,}\s*(?:"
    r"Original Message|Forwarded message|Reply Message"  # English: Outlook, AOL, Gmail
    r"|Ursprüngliche Nachricht|Originalnachricht|Weitergeleitete Nachricht"  # German
    r"|Message d'origine|Message original|Message transféré"  # French
    r"|Mensaje original|Mensaje reenviado"  # Spanish
    r"|Mensagem original|Mensagem encaminhada"  # Portuguese
    r"|Messaggio originale|Messaggio inoltrato"  # Italian
    r"|Oorspronkelijk bericht|Origineel bericht|Doorgestuurd bericht"  # Dutch
    r"|Ursprungligt meddelande|Oprindelig meddelelse|Opprinnelig melding"  # SV, DA, NO
    r"|Alkuperäinen viesti"  # Finnish
    r"|Wiadomość oryginalna|Původní zpráva|Исходное сообщение|Пересылаемое сообщение"  # PL, CZ, RU
    r"|原始邮件|原始郵件|転送メッセージ|元のメッセージ"  # Chinese, Japanese
    r")\s*-{2,}\s*\**\s*$"
    r"|^\s*(?:Begin forwarded message|Début du message réexpédié|Anfang der weitergeleiteten"
    r" Nachricht|Inicio del mensaje reenviado)\s*:",  # Apple Mail forwards in en/fr/de/es
    _I,
)
# Outlook-style header block "From: ... Sent: ... To: ... Subject:" (any of these languages).
_FROM = r"From|Von|De|Van|Da|Fra|Från|Od|От|Lähettäjä|发件人|寄件者|差出人"
_OTHER = (
    r"Sent|Date|To|Cc|Subject|Gesendet|Datum|An|Betreff|Envoyé|À|Objet|Verzonden|Aan|Onderwerp"
    r"|Enviado|Fecha|Para|Asunto|Inviato|Data|A|Oggetto|Skickat|Till|Ämne|Sendt|Til|Emne"
    r"|Отправлено|Дата|Кому|Тема|发送时间|日期|收件人|主题|送信日時|宛先|件名"
)
HEADER_FROM = re.compile(rf"^\s*\**(?:{_FROM})\s*\**\s*[:：]\s*\**\s*\S", _I)
HEADER_OTHER = re.compile(rf"^\s*\**(?:{_OTHER})\s*\**\s*[:：]", _I)
# A mailing-list or forum footer quoted below a rule line, without ">".
LIST_FOOTER = re.compile(r"unsubscribe|listinfo|mailing list|abbestellen|désabonner", _I)

# One-line signatures that mail apps on phones and tablets append.
MOBILE_SIGNATURE = re.compile(
    r"^[\s(<]*(?:"
    r"sent\s+(?:from|via|with|by|using)\s+(?:my\s+|a\s+|an\s+)?[^\s,]+(?:\s+[^\s,]+){0,5}?"
    r"[)>]*\s*[.!]?(?:\s*[,.]?\s+please\s+excuse.*)?"  # "Sent from my iPhone", "Sent via mobile"
    r"|\w+\s+from\s+mobile|from\s+my\s+(?:iphone|ipad|android|mobile|phone|blackberry).{0,20}"
    r"|get\s+outlook\s+for\s+\S+"  # Outlook mobile
    r"|envoyé\s+(?:depuis|de)\s+.{1,40}"  # French
    r"|(?:von\s+meine[mr]|diese\s+nachricht\s+wurde\s+von)\s+.{1,80}\s+gesendet\.?"  # German
    r"|gesendet\s+von\s+meinem\s+.{1,40}"  # German
    r"|inviato\s+da\s+.{1,40}|enviado\s+(?:desde\s+mi|do\s+meu|de\s+meu)\s+.{1,40}"  # IT, ES, PT
    r"|(?:verzonden\s+(?:met|vanaf\s+mijn|van\s+mijn)|verstuurd\s+vanaf\s+mijn)\s+.{1,40}"  # NL
    r"|(?:sendt\s+fra\s+min|skickat\s+från\s+min|från\s+min)\s+.{1,40}"  # Nordic
    r"|отправлено\s+с\s+.{1,40}|iPhoneから送信"  # Russian, Japanese
    r"|(?:從我的|从我的|发自我的|寄自我的)\s*\S+.{0,8}"  # Chinese
    r")[\s)>]*$",
    _I,
)
_LINKS = re.compile(r"\[([^\]]*)\]\([^)]*\)|<https?://[^>]*>|\(https?://[^)]*\)|https?://\S+")

_SIGNATURE_MAX_LINES = 10  # more unquoted lines after "-- " than this is not a signature
_FOOTER_MAX_LINES = 20  # a quoted list footer is short; a longer tail may be the author's text


# Every marker _cut_index looks for has one of these characters: an attribution ends in ":"
# or "-", a separator has "--" or ":", a header block ":", a signature "--", a rule one of
# the characters it is drawn with.
_MAY_MARK = re.compile(r"[:\uff1a\-_=*~#+]")


def _blank(line: str) -> bool:
    return not line.strip()


def _mobile_signature(line: str) -> bool:
    return bool(MOBILE_SIGNATURE.match(_LINKS.sub(r"\1", line).strip()))


def _ends_like_attribution(line: str) -> bool:
    """Whether the line ends as every attribution pattern does ("...:" or "... ----"): a test
    without regular expressions that spares most lines the patterns below."""
    end = line
    while (stripped := end.rstrip().rstrip(_BIDI_MARKS)) != end:
        end = stripped
    return end.endswith((":", "\uff1a", "-"))


def _attribution_start(lines: list[str], i: int, weak: bool = True) -> int | None:
    """Index of the first line of an attribution ("On DATE, NAME wrote:") ending at line i.

    A weak one ("Bob wrote:", no date or address) counts only where `weak` allows it.
    """
    if not _ends_like_attribution(lines[i]):
        return None
    line = _BIDI.sub("", lines[i])
    if _DATE_EMAIL.search(line):
        return i
    if not (_WROTE_END.search(line) or _WROTE_FIRST.search(line)):
        return None
    for j in range(i, max(i - 3, -1), -1):  # clients wrap a long attribution over 2-3 lines
        if j < i and (_blank(lines[j]) or QUOTE.match(lines[j])):
            break
        joined = " ".join(_BIDI.sub("", x) for x in lines[j : i + 1])
        if _INTRO.match(lines[j]) and re.search(r"[\d@]", joined):
            return j
    if re.search(r"[\d@]", line) or (weak and (" via " in line or _SHORT_NAME_WROTE.match(line))):
        return i
    return None


def _outlook_block(lines: list[str], i: int) -> bool:
    """Whether line i starts a "From:/Sent:/To:/Subject:" block of the original message."""
    if not HEADER_FROM.match(lines[i]):
        return False
    following = [x for x in lines[i + 1 : i + 7] if not _blank(x)][:4]
    return sum(bool(HEADER_OTHER.match(x)) for x in following) >= 2


def _has_inline_answers(rest: list[str]) -> bool:
    """Whether own text follows the quotes below an attribution: answers written inline."""
    seen_quote = False
    for line in rest:
        if SIG_DELIMITER.match(line):
            return False
        if QUOTE.match(line):
            seen_quote = True
        elif seen_quote and not (_blank(line) or RULE.match(line) or _mobile_signature(line)):
            return True
    return False


def _short_tail(rest: list[str], limit: int, until_quote: bool) -> bool:
    """Whether at most `limit` unquoted lines follow (up to the quoted message, if asked)."""
    count = 0
    for k, line in enumerate(rest):
        if until_quote and _quoted_message_starts(rest, k):
            break
        count += not _blank(line) and not QUOTE.match(line)
        if count > limit:
            return False
    return True


def _cut_index(lines: list[str]) -> int | None:
    """The line where the quoted remainder of the message (or the signature) begins, if any."""
    text_before = False
    last_quote = max((k for k, x in enumerate(lines) if QUOTE.match(x)), default=-1)
    for i, line in enumerate(lines):
        if _blank(line) or QUOTE.match(line):
            continue
        if not _MAY_MARK.search(line):  # ordinary text: no marker below can start here
            text_before = True
            continue
        rest = lines[i + 1 :]
        # Without a ">" quote below, only a dated or addressed attribution may end the text.
        start = _attribution_start(lines, i, weak=last_quote > i)
        if start is not None:
            own_text = any(not _blank(x) and not QUOTE.match(x) for x in lines[:start])
            if own_text and not _has_inline_answers(rest):
                return start
        elif text_before and (SEPARATOR.match(line) or _outlook_block(lines, i)):
            return i
        elif text_before and SIG_DELIMITER.match(line):
            if _short_tail(rest, _SIGNATURE_MAX_LINES, until_quote=True):
                return i
        elif (
            text_before
            and RULE.match(line)
            and _short_tail(rest, _FOOTER_MAX_LINES, until_quote=False)
            and any(LIST_FOOTER.search(x) for x in rest)
        ):
            return i
        text_before = text_before or not (SEPARATOR.match(line) or RULE.match(line))
    return None


def _quoted_message_starts(lines: list[str], k: int) -> bool:
    """Whether the quoted earlier message starts at line k (where a signature above ends)."""
    line = lines[k]
    if QUOTE.match(line) or SEPARATOR.match(line) or _outlook_block(lines, k):
        return True
    return _attribution_start(lines, k) is not None


def _drop_leading_attribution(lines: list[str]) -> list[str]:
    """Drop an attribution and its quote at the very top (bottom-posting, e.g. Thunderbird)."""
    first = next((k for k, x in enumerate(lines) if not _blank(x)), None)
    if first is None:
        return lines
    for end in range(first, min(first + 3, len(lines))):
        if _attribution_start(lines, end) == first:
            k = end + 1
            while k < len(lines) and _blank(lines[k]):
                k += 1
            if k == len(lines) or not QUOTE.match(lines[k]):
                return lines  # not followed by a ">" quote: keep, we cannot tell where it ends
            while k < len(lines) and (QUOTE.match(lines[k]) or _blank(lines[k])):
                k += 1
            return lines[k:]
    return lines


def _trim_tail(lines: list[str]) -> list[str]:
    """Drop what trails the own text: quotes, their attribution, rules and mobile signatures."""
    lines = list(lines)
    while lines:
        last = lines[-1]
        if _blank(last) or RULE.match(last) or TRACKER_DOT.match(last) or _mobile_signature(last):
            lines.pop()
        elif QUOTE.match(last):
            if not any(not _blank(x) and not QUOTE.match(x) for x in lines):
                break  # nothing but quotes: leave them for the caller's fallback
            lines.pop()
        elif (start := _attribution_start(lines, len(lines) - 1)) is not None:
            del lines[start:]
        else:
            break
    return lines


def new_text(body: str) -> str:
    """The text the author wrote in `body`, without the quoted thread and signatures.

    Whatever is not clearly a quote or a signature is kept. If trimming leaves nothing
    (a bare forward, a message that is only a quote), the whole body is returned stripped.
    """
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = _drop_leading_attribution(lines)
    cut = _cut_index(lines)
    if cut is not None:
        lines = lines[:cut]
    text = "\n".join(_trim_tail(lines)).strip()
    return text or body.replace("\r\n", "\n").replace("\r", "\n").strip()
