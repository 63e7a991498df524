"""Deterministic synthetic shop database with planted privacy hard cases.

``generate_shop`` (re)creates the shop tables (see ``schema.py``) in SQLite or
PostgreSQL and fills them with realistic, multi-country customer data of a
jewellery retailer. Everything derives from ``seed``, ``customers`` and
``as_of``: one ``random.Random(seed)`` plus one seeded Faker per locale, no
global random state and never today's date, so the same arguments give
identical rows.

Hard cases are *planted* on purpose (children, opt-outs, GPC, EEA consent,
messy e-mails and phones, formula-like or PII-bearing review bodies) and
returned as a ``Planted`` record of ids so tests can check that a pipeline
treats each of them correctly. Each kind also has *isolated* members: customers
that carry no other hard trait, so one rule can be tested at a time.

All contact data is fictional where a fictional range exists and validates:
e-mails use example.com/.org/.net, US/CA phones use the 555 exchange, GB phones
the Ofcom drama ranges, FR phones the ARCEP fiction ranges, IP addresses the
documentation ranges (RFC 5737 / RFC 3849). Phones of other countries are
random numbers that ``phonenumbers`` accepts as valid.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from random import Random
from typing import Any, Iterator

import phonenumbers as pn
from faker import Faker
from faker.providers.address.it_IT import Provider as _ItAddress
from sqlalchemy import Engine, create_engine, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateSchema

from .schema import SHOP_TABLES, metadata

__all__ = [
    "CUSTOMER_KINDS",
    "EEA_COUNTRIES",
    "FLAG_KINDS",
    "REVIEW_KINDS",
    "Planted",
    "describe_shop",
    "generate_shop",
]

# --------------------------------------------------------------------------
# Planted kinds
# --------------------------------------------------------------------------

#: Hard traits that change what may be shared (or how a value must be
#: normalised). A customer is "clean" when it has none of them.
FLAG_KINDS: tuple[str, ...] = (
    "under_13",
    "under_16",
    "sale_share_opt_out",
    "gpc",
    "eea_no_ad_consent",
    "email_mixed_case",
    "email_padded",
    "email_plus_tag",
)

#: Planted kinds whose members are customer ids.
CUSTOMER_KINDS: tuple[str, ...] = FLAG_KINDS + (
    "eea_with_ad_consent",
    "marketing_opt_in",
    "phone_national_format",
    "phone_international_format",
)

#: Planted kinds whose members are review ids.
REVIEW_KINDS: tuple[str, ...] = (
    "review_formula_leading",  # body starts with = + - @
    "review_control_leading",  # body starts with TAB or CR
    "review_contains_email",  # body contains the author's e-mail address
    "review_contains_phone",  # body contains the author's phone number
)

#: European Economic Area: the EU 27 plus Iceland, Liechtenstein, Norway.
#: Not GB (left the EU) and not CH (EFTA but outside the EEA).
EEA_COUNTRIES: frozenset[str] = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI"
    " ES SE IS LI NO".split()
)

# Background rates (share of all customers) on top of the isolated members.
# eea_no_ad_consent has none: it follows from _EEA_AD_CONSENT_RATE.
_FLAG_RATES = {
    "under_13": 0.0025,
    "under_16": 0.0025,
    "sale_share_opt_out": 0.05,
    "gpc": 0.03,
    "email_mixed_case": 0.03,
    "email_padded": 0.02,
    "email_plus_tag": 0.03,
}
_EEA_AD_CONSENT_RATE = 0.55
_MARKETING_RATE = 0.40
_INTL_PHONE_RATE = 0.35
# (rate, minimum) of planted reviews per customer.
_REVIEW_RATES = {
    "review_formula_leading": (0.003, 8),  # >= 2 per leading character
    "review_control_leading": (0.002, 4),
    "review_contains_email": (0.003, 4),
    "review_contains_phone": (0.003, 4),
}

_CHUNK = 5_000  # customers per generation block and rows per executemany

# Age bands in years at as_of. Minors sit well inside their band so a run
# up to ~6 months after as_of still sees the same band.
_AGE_BANDS = {
    "under_13": (8.05, 12.40),
    "under_16": (13.55, 15.40),
}
_ADULT_AGE = (18.2, 89.5, 38.0)  # triangular(low, high, mode)

# --------------------------------------------------------------------------
# Countries
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Country:
    code: str
    locale: str
    weight: float
    currency: str
    carriers: tuple[str, ...]
    # National-dialling templates: X = any digit, N = 2-9. US/CA get theirs
    # from the state/province area codes instead.
    phones: tuple[str, ...] = ()
    # Used when `phones` are exhausted (small fictional ranges).
    fallback_phones: tuple[str, ...] = ()
    showrooms: tuple[str, ...] = ("Paris - Place Vendome",)


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "US", "en_US", 54, "USD", ("UPS", "FedEx"),
        showrooms=("New York - Fifth Avenue", "Los Angeles - Rodeo Drive",
                   "Chicago - Oak Street", "Miami - Design District"),
    ),
    _Country(
        "GB", "en_GB", 9, "GBP", ("Royal Mail", "UPS", "DHL"),
        # Ofcom drama ranges that libphonenumber accepts (~14k numbers).
        phones=("0113 496 0XXX", "0114 496 0XXX", "0116 496 0XXX",
                "0117 496 0XXX", "0118 496 0XXX", "0121 496 0XXX",
                "0131 496 0XXX", "0141 496 0XXX", "0151 496 0XXX",
                "0161 496 0XXX", "0191 498 0XXX", "020 7946 0XXX",
                "028 9649 6XXX", "029 2018 0XXX"),
        fallback_phones=("020 7NXX XXXX", "07NXX XXXXXX"),
        showrooms=("London - Bond Street", "Edinburgh - George Street"),
    ),
    _Country(
        "CA", "en_CA", 7, "CAD", ("Canada Post", "Purolator", "UPS"),
        showrooms=("Toronto - Yorkville", "Vancouver - Alberni Street"),
    ),
    _Country(
        "DE", "de_DE", 7, "EUR", ("DHL", "Hermes", "UPS"),
        phones=("030 NXXXXXX", "030 NXXXXXXX", "040 NXXXXXX", "089 NXXXXXX",
                "0221 NXXXXXX", "069 NXXXXXX", "0711 NXXXXXX",
                "0170 XXXXXXX", "0171 XXXXXXX", "0160 XXXXXXX",
                "0152 XXXXXXX"),
        showrooms=("Munich - Maximilianstrasse", "Berlin - Kurfuerstendamm"),
    ),
    _Country(
        "FR", "fr_FR", 5.5, "EUR", ("La Poste", "Chronopost", "DHL"),
        # ARCEP fiction ranges (the mobile one, 06 39 98, does not validate).
        phones=("01 99 00 XX XX", "02 61 91 XX XX", "03 53 01 XX XX",
                "04 65 71 XX XX", "05 36 49 XX XX", "09 77 42 XX XX"),
        fallback_phones=("06 XX XX XX XX", "07 NX XX XX XX"),
        showrooms=("Paris - Place Vendome",),
    ),
    _Country(
        "ES", "es_ES", 4, "EUR", ("Correos", "SEUR", "DHL"),
        phones=("6XX XXX XXX", "6XX XXX XXX", "91N XXX XXX", "93N XXX XXX",
                "96N XXX XXX"),
        showrooms=("Madrid - Calle de Serrano",),
    ),
    _Country(
        "IT", "it_IT", 4, "EUR", ("Poste Italiane", "BRT", "DHL"),
        phones=("06 NXXX XXXX", "02 NXXX XXXX", "32X XXX XXXX", "33X XXX XXXX",
                "34X XXX XXXX", "39X XXX XXXX"),
        showrooms=("Milan - Via Montenapoleone",),
    ),
    _Country(
        "NL", "nl_NL", 3, "EUR", ("PostNL", "DHL"),
        phones=("06 NXXXXXXX", "06 NXXXXXXX", "020 NXX XXXX", "010 NXX XXXX",
                "030 NXX XXXX"),
        showrooms=("Amsterdam - P.C. Hooftstraat",),
    ),
    _Country(
        "IE", "en_IE", 2, "EUR", ("An Post", "DPD", "UPS"),
        phones=("01 NXX XXXX", "083 NXX XXXX", "085 NXX XXXX", "086 NXX XXXX",
                "087 NXX XXXX"),
        showrooms=("London - Bond Street",),
    ),
    _Country(
        "AT", "de_AT", 1, "EUR", ("Post AG", "DHL"),
        phones=("01 NXXXXXX", "0664 XXXXXXX", "0676 XXXXXXX", "0699 XXXXXXX"),
        showrooms=("Munich - Maximilianstrasse",),
    ),
    _Country(
        "BE", "nl_BE", 1, "EUR", ("bpost", "DHL"),
        phones=("047N XX XX XX", "048N XX XX XX", "049N XX XX XX",
                "02 NXX XX XX", "03 NXX XX XX"),
        showrooms=("Amsterdam - P.C. Hooftstraat", "Paris - Place Vendome"),
    ),
    _Country(
        "PL", "pl_PL", 1, "PLN", ("Poczta Polska", "DHL"),
        phones=("5NX XXX XXX", "6NX XXX XXX", "7NX XXX XXX", "22 NXX XX XX"),
        showrooms=("Berlin - Kurfuerstendamm",),
    ),
    _Country(
        "SE", "sv_SE", 0.8, "SEK", ("PostNord", "DHL"),
        phones=("070 NXX XX XX", "072 NXX XX XX", "073 NXX XX XX",
                "08 NXX XXX XX"),
        showrooms=("Amsterdam - P.C. Hooftstraat",),
    ),
    _Country(
        "PT", "pt_PT", 0.7, "EUR", ("CTT", "DHL"),
        phones=("91X XXX XXX", "93X XXX XXX", "96X XXX XXX", "21N XXX XXX"),
        showrooms=("Madrid - Calle de Serrano",),
    ),
    _Country(
        "DK", "da_DK", 0.5, "DKK", ("PostNord", "GLS"),
        phones=("2X XX XX XX", "3N XX XX XX", "4N XX XX XX"),
        showrooms=("Amsterdam - P.C. Hooftstraat",),
    ),
    _Country(
        "CH", "de_CH", 1, "CHF", ("Swiss Post", "DHL"),
        phones=("044 NXX XX XX", "043 NXX XX XX", "079 NXX XX XX",
                "078 NXX XX XX", "076 NXX XX XX"),
        showrooms=("Zurich - Bahnhofstrasse",),
    ),
)
_BY_CODE = {c.code: c for c in _COUNTRIES}

# US states (weight ~ population) with some of their area codes; the phone
# goes to (area) 555-XXXX, which libphonenumber accepts.
_US_STATES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("CA", 39, ("213", "310", "415", "408", "619", "714", "818", "916")),
    ("TX", 30, ("214", "512", "713", "210", "817")),
    ("FL", 22, ("305", "407", "813", "904", "954")),
    ("NY", 20, ("212", "718", "917", "516", "585")),
    ("PA", 13, ("215", "412", "610", "717")),
    ("IL", 12.5, ("312", "773", "847", "630")),
    ("OH", 11.8, ("216", "614", "513")),
    ("GA", 11, ("404", "678", "770")),
    ("NC", 10.7, ("704", "919", "336")),
    ("MI", 10, ("313", "248", "616")),
    ("NJ", 9.3, ("201", "973", "732", "908")),
    ("VA", 8.7, ("703", "804", "757")),
    ("WA", 7.8, ("206", "425", "509")),
    ("AZ", 7.4, ("602", "480", "520")),
    ("MA", 7, ("617", "508", "781")),
    ("TN", 7, ("615", "901", "865")),
    ("IN", 6.8, ("317", "219")),
    ("MD", 6.2, ("410", "301")),
    ("MO", 6.2, ("314", "816")),
    ("WI", 5.9, ("414", "608")),
    ("CO", 5.9, ("303", "720", "719")),
    ("MN", 5.7, ("612", "651", "952")),
    ("SC", 5.3, ("803", "843")),
    ("AL", 5.1, ("205", "256")),
    ("LA", 4.6, ("504", "225")),
    ("KY", 4.5, ("502", "859")),
    ("OR", 4.2, ("503", "541")),
    ("OK", 4, ("405", "918")),
    ("CT", 3.6, ("203", "860")),
    ("UT", 3.4, ("801", "435")),
    ("NV", 3.2, ("702", "775")),
    ("NM", 2.1, ("505",)),
    ("HI", 1.4, ("808",)),
    ("DC", 0.7, ("202",)),
)
_CA_PROVINCES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("ON", 15.6, ("416", "647", "905", "613", "519")),
    ("QC", 8.9, ("514", "438", "418", "450", "819")),
    ("BC", 5.5, ("604", "778", "250")),
    ("AB", 4.7, ("403", "587", "780")),
    ("MB", 1.4, ("204",)),
    ("SK", 1.2, ("306",)),
    ("NS", 1.0, ("902",)),
    ("NB", 0.8, ("506",)),
    ("NL", 0.5, ("709",)),
)
_NANP_REGIONS = {"US": _US_STATES, "CA": _CA_PROVINCES}
_IT_PROVINCES = dict(zip(_ItAddress.states_abbr, _ItAddress.states)) | {
    "SU": "Sud Sardegna"}
# Faker's en_IE counties include Northern Ireland (UK), which would contradict
# country = IE.
_NI_COUNTIES = frozenset({"Antrim", "Armagh", "Down", "Fermanagh", "Londonderry",
                          "Derry", "Tyrone"})

_FX = {
    "USD": Decimal("1"), "CAD": Decimal("1.37"), "GBP": Decimal("0.79"),
    "EUR": Decimal("0.92"), "CHF": Decimal("0.88"), "PLN": Decimal("3.95"),
    "SEK": Decimal("10.6"), "DKK": Decimal("6.88"),
}

# Phone display styles per country, national and international.
_NAT_STYLES = {
    "US": ("nat", "nat", "dash", "dot", "one_dash"),
    "GB": ("nat", "nat", "compact", "paren"),
    "DE": ("nat", "slash", "paren", "compact"),
    "FR": ("nat", "nat", "dot", "compact"),
}
_NAT_STYLES["CA"] = _NAT_STYLES["US"]
_INTL_STYLES = {
    "US": ("intl", "intl_space", "e164", "intl_paren"),
    "GB": ("intl", "intl", "trunk", "e164", "00"),
    "DE": ("intl", "00", "e164", "intl_dash"),
    "FR": ("intl", "00", "e164", "trunk"),
}
_INTL_STYLES["CA"] = _INTL_STYLES["US"]
_DEFAULT_NAT = ("nat", "nat", "compact")
_DEFAULT_INTL = ("intl", "00", "e164")

_LONG_DIGITS = re.compile(r"\d{13,}")  # would look like a card number
_ALNUM = string.ascii_letters + string.digits
_UPPER = string.ascii_uppercase
_DIGITS = string.digits

# --------------------------------------------------------------------------
# E-mail, products, texts
# --------------------------------------------------------------------------

_EMAIL_DOMAINS = (
    ("example.com", 30), ("example.org", 20), ("example.net", 20),
    ("mail.example.com", 10), ("post.example.net", 8), ("inbox.example.org", 7),
    ("shop.example", 5),
)
_PLUS_TAGS = ("promo", "shop", "jewels", "news", "deals", "orders", "gifts", "rings")
_PADDINGS = (" {}", "{} ", "  {}", "\t{}", "{}\n", "{}\t", " {}\n", "\t{} ", "  {}  ")
_ASCII_FOLD = str.maketrans({
    "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "ß": "ss",
    "đ": "d", "Đ": "D", "œ": "oe", "Œ": "Oe", "þ": "th", "ı": "i",
})

_CATEGORIES = (
    # (category, sku prefix, noun, styles, base USD price)
    ("rings", "RNG", "Ring", ("Solitaire", "Halo", "Eternity", "Stacking",
                              "Signet", "Cocktail", "Three-Stone", "Band"), 420),
    ("necklaces", "NCK", "Necklace", ("Pendant", "Choker", "Tennis", "Lariat",
                                      "Station", "Locket", "Bar", "Layered"), 380),
    ("earrings", "EAR", "Earrings", ("Stud", "Hoop", "Drop", "Huggie",
                                     "Chandelier", "Climber", "Cluster"), 260),
    ("bracelets", "BRC", "Bracelet", ("Tennis", "Bangle", "Cuff", "Charm",
                                      "Chain", "Link", "Beaded"), 310),
    ("watches", "WAT", "Watch", ("Classic", "Diver", "Dress", "Chronograph",
                                 "Mesh"), 690),
    ("anklets", "ANK", "Anklet", ("Chain", "Charm", "Beaded"), 95),
    ("brooches", "BRO", "Brooch", ("Floral", "Bee", "Vintage"), 180),
    ("cufflinks", "CUF", "Cufflinks", ("Classic", "Knot", "Engraved"), 150),
)
_METALS = (("Sterling Silver", 0.35), ("Gold Vermeil", 0.5), ("14k Gold", 1.0),
           ("18k Yellow Gold", 1.6), ("18k White Gold", 1.7),
           ("18k Rose Gold", 1.6), ("Platinum", 2.4))
_STONES = (("", 1.0), ("Diamond", 3.0), ("Sapphire", 1.8), ("Emerald", 2.0),
           ("Ruby", 1.9), ("Pearl", 1.2), ("Opal", 1.1), ("Amethyst", 0.9),
           ("Topaz", 0.9), ("Aquamarine", 1.2), ("Garnet", 0.8),
           ("Morganite", 1.3))

_WHO = ("wife", "mum", "sister", "partner", "daughter", "best friend",
        "husband", "girlfriend", "grandmother")
_EN_TEXT = {
    "pos_title": ("Absolutely stunning", "Lovely gift", "Beautiful quality",
                  "Perfect for everyday", "Gorgeous", "Worth every penny",
                  "Exactly as pictured", "Elegant and simple", "My new favourite"),
    "mix_title": ("Nice but small", "Pretty, some issues", "Okay for the price",
                  "Good, not great"),
    "neg_title": ("Disappointed", "Not as pictured", "Tarnished quickly",
                  "Would not buy again"),
    "pos": ("The {item} is even prettier in person.",
            "Bought this for my {who} and she loved it.",
            "The {metal} has a lovely shine and feels solid.",
            "Packaging was beautiful, perfect as a gift.",
            "I wear it every day and it still looks new.",
            "Sizing was spot on.",
            "Delivery was quicker than expected.",
            "Catches the light beautifully."),
    "mix": ("Pretty, but a little smaller than I expected.",
            "The clasp is fiddly.",
            "Nice design, although it feels a bit light.",
            "Took a while to arrive."),
    "neg": ("The {item} tarnished after a couple of weeks.",
            "The stone came loose within a month.",
            "Not worth the price in my opinion.",
            "Customer service was slow to reply.",
            "Had to return it, it looked cheap."),
}
_LOCAL_TEXT = {
    "de": (("Wundersch\u00f6n", "Tolles Geschenk", "Sehr zufrieden"),
           ("Entt\u00e4uscht", "Leider nicht gut"),
           ("Sieht in echt noch sch\u00f6ner aus als auf den Bildern.",
            "Schnelle Lieferung und sch\u00f6ne Verpackung.",
            "Ich trage das Schmuckst\u00fcck jeden Tag."),
           ("Leider schon nach zwei Wochen angelaufen.",
            "Der Verschluss ist sehr fummelig.")),
    "fr": (("Magnifique", "Tr\u00e8s belle qualit\u00e9", "Parfait"),
           ("D\u00e9\u00e7ue", "Bof"),
           ("Encore plus beau en vrai.", "Livraison rapide, joli emballage.",
            "Je le porte tous les jours."),
           ("Il a noirci au bout de deux semaines.",
            "Le fermoir est difficile \u00e0 mettre.")),
    "es": (("Precioso", "Muy bonito", "Encantada"),
           ("Decepcionada", "No lo recomiendo"),
           ("Es a\u00fan m\u00e1s bonito en persona.",
            "Lleg\u00f3 r\u00e1pido y bien empaquetado.",
            "Lo llevo todos los d\u00edas."),
           ("Se oscureci\u00f3 en dos semanas.", "El cierre es muy dif\u00edcil.")),
    "it": (("Bellissimo", "Ottima qualit\u00e0", "Perfetto"),
           ("Deluso", "Non vale il prezzo"),
           ("Dal vivo \u00e8 ancora pi\u00f9 bello.",
            "Spedizione veloce e confezione curata.",
            "Lo indosso tutti i giorni."),
           ("Si \u00e8 scurito dopo due settimane.",
            "La chiusura \u00e8 scomoda.")),
    "nl": (("Prachtig", "Mooi cadeau", "Heel tevreden"),
           ("Teleurgesteld", "Valt tegen"),
           ("In het echt nog mooier dan op de foto.",
            "Snel geleverd en mooi verpakt.", "Ik draag het elke dag."),
           ("Na twee weken al verkleurd.", "De sluiting is lastig.")),
}
_LANG_BY_COUNTRY = {"DE": "de", "AT": "de", "CH": "de", "FR": "fr", "ES": "es",
                    "IT": "it", "NL": "nl", "BE": "nl"}

# Planted review bodies. Formula bodies cycle through these leading chars.
_FORMULA_BODIES = {
    "=": ('=HYPERLINK("http://x.example/","click")', "=1+1",
          "=cmd|' /C calc'!A0", "=SUM(A1:A9) lovely ring"),
    "+": ("+1 star, would buy again", "+ lovely packaging",
          "+++ fast delivery +++"),
    "-": ("-great ring", "- not as pictured", "-- five stars --"),
    "@": ("@everyone look at this ring", "@SUM(1+1)*cmd|' /C calc'!A0",
          "@shop please restock the hoops"),
}
_CONTROL_BODIES = ("\tLovely ring, arrived quickly.", "\r\nBeautiful necklace.",
                   "\t=1+1", "\rPerfect fit.", "\t\tGreat gift for my sister.",
                   "\r=HYPERLINK(\"http://x.example/\",\"click\")")
_EMAIL_BODIES = ("Happy to answer questions about sizing, email me at {}.",
                 "Seller never replied. Contact me: {}",
                 "If anyone wants the matching earrings write to {} thanks",
                 "Lovely. Questions? {}")
_PHONE_BODIES = ("Call me at {} if you want to buy mine.",
                 "Courier lost it twice, they can reach me on {} now.",
                 "Text {} for more pictures.",
                 "Great ring. Phone: {}")

_UA_TEMPLATES = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {i}_{j} like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/{i}.{j} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS {i}_{j} like Mac OS X) AppleWebKit/605.1.15 (KHTML,"
    " like Gecko) Version/{i}.{j} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android {a}; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 "
    "Firefox/{f}.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/{i}.{j} Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
)
_UA_WEIGHTS = (28, 10, 24, 4, 18, 7, 5, 4)
# Documentation address blocks: never a real subscriber.
_IPV4_NETS = ("192.0.2", "198.51.100", "203.0.113")


def _ascii_word(s: str) -> str:
    """Lower-case ASCII letters of a name, for building e-mail local parts."""
    s = unicodedata.normalize("NFKD", s.translate(_ASCII_FOLD))
    return "".join(ch for ch in s.encode("ascii", "ignore").decode().lower()
                   if ch.isalnum())


def _years_ago(as_of: date, years: float) -> date:
    return as_of - timedelta(days=int(round(years * 365.2425)))


# --------------------------------------------------------------------------
# Planted
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """Ids of the planted hard cases of one generated shop.

    ``customers`` maps each of ``CUSTOMER_KINDS`` to sorted customer ids,
    ``reviews`` maps each of ``REVIEW_KINDS`` to sorted review ids.
    ``isolated`` maps every kind to the subset whose customer (the author, for
    review kinds) carries no *other* hard trait of ``FLAG_KINDS``: an adult
    who did not opt out, sent no GPC, is non-EEA or EEA-consented, and has a
    plain lower-case e-mail. Only ids and counts, never personal data.
    """

    seed: int
    size: int
    as_of: date
    customers: dict[str, list[int]]
    reviews: dict[str, list[int]]
    isolated: dict[str, list[int]]

    def __getitem__(self, kind: str) -> list[int]:
        if kind in self.customers:
            return self.customers[kind]
        return self.reviews[kind]

    def kinds(self) -> tuple[str, ...]:
        return CUSTOMER_KINDS + REVIEW_KINDS

    def counts(self) -> dict[str, int]:
        """Number of planted ids per kind."""
        return {k: len(self[k]) for k in self.kinds()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "size": self.size,
            "as_of": self.as_of.isoformat(),
            "counts": self.counts(),
            "isolated_counts": {k: len(v) for k, v in self.isolated.items()},
            "customers": self.customers,
            "reviews": self.reviews,
            "isolated": self.isolated,
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n",
                        encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> Planted:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(seed=d["seed"], size=d["size"],
                   as_of=date.fromisoformat(d["as_of"]),
                   customers=d["customers"], reviews=d["reviews"],
                   isolated=d["isolated"])


# --------------------------------------------------------------------------
# Database helpers
# --------------------------------------------------------------------------


def _normalise_url(url: str) -> str:
    """Accept a SQLAlchemy URL or a plain filesystem path (SQLite)."""
    if "://" in url:
        return url
    return f"sqlite:///{Path(url).expanduser().resolve()}"


def _engine(url: str, schema: str | None) -> tuple[Engine, Engine, str | None]:
    """(base engine to dispose, engine to use, effective schema)."""
    u = make_url(_normalise_url(url))
    if u.get_backend_name() == "sqlite":
        schema = None
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    base = create_engine(u)
    if schema:
        # Unqualified tables land in `schema`; the MetaData stays schema-free.
        return base, base.execution_options(schema_translate_map={None: schema}), schema
    return base, base, None


def _sqlite_file(url: str) -> Path | None:
    u = make_url(_normalise_url(url))
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        return Path(u.database)
    return None


def describe_shop(url: str, schema: str | None = None) -> dict[str, int]:
    """Row count per shop table (parents first)."""
    base, eng, _ = _engine(url, schema)
    try:
        with eng.connect() as conn:
            return {name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for name, t in SHOP_TABLES.items()}
    finally:
        base.dispose()


def generate_shop(
    url: str,
    customers: int = 10_000,
    seed: int = 42,
    as_of: date = date(2026, 11, 1),
    schema: str | None = None,
) -> Planted:
    """(Re)create the shop tables at ``url`` and fill them deterministically.

    ``url`` is a SQLAlchemy URL or a SQLite file path. On PostgreSQL the tables
    go to ``schema`` (created if missing); SQLite ignores it. For a SQLite file
    the planted ids are also written to ``<db file>.planted.json``.
    """
    if customers < 1:
        raise ValueError("customers must be >= 1")
    base, eng, schema = _engine(url, schema)
    try:
        with eng.begin() as conn:
            if schema:
                conn.execute(CreateSchema(schema, if_not_exists=True))
            metadata.drop_all(conn)
            metadata.create_all(conn)
        gen = _ShopGenerator(customers, seed, as_of)
        # One transaction for the whole fill: a half-filled shop never shows.
        with eng.begin() as conn:
            for table, rows in gen.batches():
                for i in range(0, len(rows), _CHUNK):
                    conn.execute(insert(SHOP_TABLES[table]), rows[i:i + _CHUNK])
        planted = gen.planted()
    finally:
        base.dispose()
    db_file = _sqlite_file(url)
    if db_file is not None:
        planted.write_json(db_file.with_name(db_file.name + ".planted.json"))
    return planted


# --------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------


class _ShopGenerator:
    """Holds the random streams and per-run bookkeeping of one generation."""

    def __init__(self, n: int, seed: int, as_of: date) -> None:
        self.n = n
        self.seed = seed
        self.as_of = as_of
        self.as_of_dt = datetime(as_of.year, as_of.month, as_of.day)
        self.rng = Random(seed)
        self.fakers: dict[str, Faker] = {}
        for c in _COUNTRIES:
            fk = Faker(c.locale)
            # A string seed is hashed with SHA-512: stable across processes.
            fk.seed_instance(f"{seed}/{c.locale}")
            self.fakers[c.code] = fk
        self.phones_seen: set[str] = set()
        self.email_bases: set[str] = set()
        self.ids = {"order": 0, "payment": 0, "shipment": 0, "review": 0,
                    "appointment": 0, "call": 0}
        self.products = self._make_products()
        self.by_sku = {p["sku"]: p for p in self.products}
        self.review_members: dict[str, list[int]] = {k: [] for k in REVIEW_KINDS}
        self.review_author: dict[int, int] = {}
        self.phone_intl: dict[int, bool] = {}
        self._plan()

    # ---- planning: who gets which hard trait --------------------------------

    def _plan(self) -> None:
        rng, n = self.rng, self.n
        ids = list(range(1, n + 1))
        codes = [c.code for c in _COUNTRIES]
        weights = [c.weight for c in _COUNTRIES]
        self.country = [""] + rng.choices(codes, weights=weights, k=n)
        flags: list[set[str]] = [set() for _ in range(n + 1)]

        # Isolated members first: each gets exactly one flag and nothing else.
        order = ids[:]
        rng.shuffle(order)
        k_pure = max(2, n // 1000)
        reserved: set[int] = set()
        for kind in FLAG_KINDS:
            want_eea = kind == "eea_no_ad_consent"
            picked = [c for c in order if c not in reserved
                      and (not want_eea or self.country[c] in EEA_COUNTRIES)][:k_pure]
            for c in picked:
                flags[c].add(kind)
                reserved.add(c)

        # Background members, overlapping freely.
        background = [c for c in order if c not in reserved]
        for kind, rate in _FLAG_RATES.items():
            pool = background
            if kind == "under_16":  # age bands are exclusive
                pool = [c for c in background if "under_13" not in flags[c]]
            k = min(len(pool), max(2, round(rate * n)))
            for c in rng.sample(pool, k):
                flags[c].add(kind)

        self.eea_consent = [False] * (n + 1)
        self.marketing = [False] * (n + 1)
        for c in ids:
            if self.country[c] in EEA_COUNTRIES:
                if "eea_no_ad_consent" in flags[c]:
                    consent = False
                elif c in reserved:
                    consent = True  # keep isolated members otherwise clean
                else:
                    consent = rng.random() < _EEA_AD_CONSENT_RATE
                    if not consent:
                        flags[c].add("eea_no_ad_consent")
                self.eea_consent[c] = consent
            self.marketing[c] = rng.random() < _MARKETING_RATE
        self.flags = flags

        # Planted reviews: half by clean authors (isolation), half by anybody.
        clean = [c for c in ids if not flags[c]]
        self.planted_reviews: dict[int, list[str]] = {}
        for kind, (rate, minimum) in _REVIEW_RATES.items():
            k = max(minimum, round(rate * n))
            half = min(len(clean), k // 2)
            authors = rng.sample(clean, half) + rng.sample(ids, min(n, k - half))
            for c in authors:
                self.planted_reviews.setdefault(c, []).append(kind)
        self.formula_counter = 0

    # ---- small helpers ------------------------------------------------------

    def _between(self, a: datetime, b: datetime) -> datetime:
        """Uniform whole-second instant in [a, b] (a if b <= a)."""
        span = int((b - a).total_seconds())
        return a if span <= 0 else a + timedelta(seconds=self.rng.randint(0, span))

    def _token(self, k: int, alphabet: str = _ALNUM) -> str:
        return "".join(self.rng.choices(alphabet, k=k))

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _next(self, key: str) -> int:
        self.ids[key] += 1
        return self.ids[key]

    # ---- products -----------------------------------------------------------

    def _make_products(self) -> list[dict[str, Any]]:
        rng = self.rng
        rows: list[dict[str, Any]] = []
        names: set[str] = set()
        per_cat = {"rings": 40, "necklaces": 35, "earrings": 35, "bracelets": 30,
                   "watches": 20, "anklets": 14, "brooches": 12, "cufflinks": 14}
        for cat, prefix, noun, styles, base in _CATEGORIES:
            made = 0
            while made < per_cat[cat]:
                metal, m_mult = rng.choice(_METALS)
                stone, s_mult = rng.choice(_STONES)
                style = rng.choice(styles)
                name = " ".join(p for p in (metal, stone, style, noun) if p)
                if name in names:
                    continue
                names.add(name)
                made += 1
                raw = base * m_mult * s_mult * rng.uniform(0.8, 1.25)
                price = Decimal(max(19, int(raw // 5 * 5 - 1)))  # e.g. 249.00
                rows.append({"sku": f"{prefix}-{made:04d}", "name": name,
                             "category": cat, "price": price.quantize(Decimal("0.01"))})
        return rows

    # ---- people -------------------------------------------------------------

    def _address(self, code: str) -> tuple[str, str, str, str, tuple[str, ...] | None]:
        """(street, city, region, postcode, area codes) consistent with the
        country; area codes only for US/CA, to match the phone to the state."""
        fk, rng = self.fakers[code], self.rng
        area = None
        if code in _NANP_REGIONS:
            regions = _NANP_REGIONS[code]
            region, _, area = rng.choices(regions, weights=[r[1] for r in regions])[0]
            if code == "US":
                postcode = fk.zipcode_in_state(region)
            else:  # always "A1A 1A1"; Faker sometimes drops the space
                pc = fk.postalcode_in_province(region).replace(" ", "")
                postcode = f"{pc[:3]} {pc[3:]}"
        elif code == "GB":
            region, postcode = fk.county(), fk.postcode()
        elif code == "FR":
            dep, region = fk.department()
            if len(dep) == 3:  # overseas: 971xx
                postcode = dep + f"{rng.randint(0, 99):02d}"
            else:
                postcode = ("20" if dep in ("2A", "2B") else dep) + f"{rng.randint(0, 999):03d}"
        elif code == "IE":
            region = fk.county()
            while region in _NI_COUNTIES:
                region = fk.county()
            pc = fk.postcode().replace(" ", "")  # Eircode: "A65 F4E2"
            postcode = f"{pc[:3]} {pc[3:]}"
        elif code == "NL":
            region, pc = fk.province(), fk.postcode().replace(" ", "")
            postcode = f"{pc[:4]} {pc[4:]}"
        elif code == "SE":
            region, pc = fk.state(), fk.postcode().replace(" ", "")
            postcode = f"{pc[:3]} {pc[3:]}"
        elif code in ("BE",):
            region, postcode = fk.province(), fk.postcode()
        elif code == "PL":
            region, postcode = fk.region(), fk.postcode()
        elif code == "PT":
            region, postcode = fk.administrative_unit(), fk.postcode()
        elif code == "CH":
            region, postcode = fk.canton_name(), fk.postcode()
        elif code == "IT":
            # Faker's it_IT city() draws from a set, whose order depends on
            # PYTHONHASHSEED; its CAP table is ordered and also makes city,
            # province and postcode agree.
            postcode = fk.postcode()
            city, abbr = rng.choice(_ItAddress.cap_city_province[postcode])
            region = _IT_PROVINCES.get(abbr, abbr)
        else:  # DE, AT, ES, DK
            region, postcode = fk.state(), fk.postcode()
        street = " ".join(fk.street_address().split())
        if code != "IT":
            city = fk.city().strip()
        return street, city, region, postcode, area

    def _new_phone(self, code: str, area: tuple[str, ...] | None) -> pn.PhoneNumber:
        """A valid phone number for `code`, unique within this shop."""
        rng = self.rng
        country = _BY_CODE[code]
        if code in _NANP_REGIONS:
            primary = tuple(f"({ac}) 555-XXXX" for ac in (area or ("212",)))
            fallback = tuple(f"({ac}) NXX-XXXX" for ac in (area or ("212",)))
        else:
            primary, fallback = country.phones, country.fallback_phones
        for attempt in range(120):
            pool = primary if attempt < 60 or not fallback else fallback
            tpl = rng.choice(pool)
            s = "".join(rng.choice(_DIGITS) if ch == "X"
                        else rng.choice("23456789") if ch == "N" else ch
                        for ch in tpl)
            try:
                num = pn.parse(s, code)
            except pn.NumberParseException:
                continue
            if not pn.is_valid_number(num):
                continue
            key = pn.format_number(num, pn.PhoneNumberFormat.E164)
            if key in self.phones_seen:
                continue
            self.phones_seen.add(key)
            return num
        raise RuntimeError(f"could not draw a valid unique phone for {code}")

    @staticmethod
    def _render_phone(num: pn.PhoneNumber, code: str, style: str) -> str:
        nat = pn.format_number(num, pn.PhoneNumberFormat.NATIONAL)
        intl = pn.format_number(num, pn.PhoneNumberFormat.INTERNATIONAL)
        if style == "nat":
            return nat
        if style == "intl":
            return intl
        if style == "e164":
            return pn.format_number(num, pn.PhoneNumberFormat.E164)
        if style == "compact":
            return re.sub(r"\D", "", nat)
        if style == "dash":
            return re.sub(r"[\s().\-/]+", "-", nat).strip("-")
        if style == "dot":
            return re.sub(r"[\s().\-/]+", ".", nat).strip(".")
        if style == "one_dash":
            return "1-" + re.sub(r"[\s().\-/]+", "-", nat).strip("-")
        if style == "slash":
            head, _, rest = nat.partition(" ")
            return f"{head}/{rest.replace(' ', '')}"
        if style == "paren":
            head, _, rest = nat.partition(" ")
            return f"({head.strip('()')}) {rest}"
        if style == "intl_space":
            return intl.replace("-", " ")
        if style == "intl_dash":
            return re.sub(r"\s+", "-", intl)
        if style == "intl_paren":
            return f"+{num.country_code} {nat}"
        if style == "trunk":
            head, _, rest = intl.partition(" ")
            return f"{head} (0){rest}"
        if style == "00":
            return "00" + intl[1:]
        raise ValueError(style)

    def _format_phone(self, num: pn.PhoneNumber, code: str, intl: bool) -> str:
        """Show `num` in a random national or international style that parses
        back to the same valid number and has no card-like digit run."""
        styles = (_INTL_STYLES.get(code, _DEFAULT_INTL) if intl
                  else _NAT_STYLES.get(code, _DEFAULT_NAT))
        style = self.rng.choice(styles)
        s = self._render_phone(num, code, style)
        if not self._phone_ok(s, code, num):
            s = self._render_phone(num, code, "intl" if intl else "nat")
        return s

    @staticmethod
    def _phone_ok(s: str, code: str, num: pn.PhoneNumber) -> bool:
        if _LONG_DIGITS.search(s):
            return False
        try:
            back = pn.parse(s, code)
        except pn.NumberParseException:
            return False
        return pn.is_valid_number(back) and back.national_number == num.national_number \
            and back.country_code == num.country_code

    def _caller_id(self, num: pn.PhoneNumber) -> str:
        e164 = pn.format_number(num, pn.PhoneNumberFormat.E164)
        if _LONG_DIGITS.search(e164):
            return pn.format_number(num, pn.PhoneNumberFormat.INTERNATIONAL)
        return e164

    def _email(self, first: str, last: str, birth: date, flags: set[str]) -> str:
        rng = self.rng
        f, l = _ascii_word(first) or "customer", _ascii_word(last) or "shopper"
        pattern = rng.randrange(7)
        local = (f"{f}.{l}", f"{f}{l}", f"{f[0]}{l}", f"{f}_{l}",
                 f"{f}.{l}{rng.randint(1, 99)}", f"{l}.{f}",
                 f"{f}{birth.year % 100:02d}")[pattern]
        domain = rng.choices([d for d, _ in _EMAIL_DOMAINS],
                             weights=[w for _, w in _EMAIL_DOMAINS])[0]
        # Unique even after stripping a +tag, so a tag never merges two people.
        base = local
        while f"{local}@{domain}" in self.email_bases:
            local = f"{base}{rng.randint(2, 9999)}"
        self.email_bases.add(f"{local}@{domain}")
        if "email_plus_tag" in flags:
            local = f"{local}+{rng.choice(_PLUS_TAGS)}"
        if "email_mixed_case" in flags:
            local = re.sub(r"[a-z]+", lambda m: m.group(0).capitalize(), local)
            labels = domain.split(".")
            if rng.random() < 0.5:
                labels = [lab.capitalize() for lab in labels[:-1]] + [labels[-1].upper()]
            else:
                labels = [lab.upper() for lab in labels]
            domain = ".".join(labels)
        email = f"{local}@{domain}"
        if "email_padded" in flags:
            email = rng.choice(_PADDINGS).format(email)
        return email

    # ---- generation ---------------------------------------------------------

    def batches(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Yield (table, rows) in insert order, a block of customers at a time."""
        yield "products", self.products
        for start in range(1, self.n + 1, _CHUNK):
            buf: dict[str, list[dict[str, Any]]] = {t: [] for t in SHOP_TABLES}
            for cid in range(start, min(self.n, start + _CHUNK - 1) + 1):
                self._customer(cid, buf)
            for table in SHOP_TABLES:  # parents first
                if buf[table]:
                    yield table, buf[table]

    def _customer(self, cid: int, buf: dict[str, list[dict[str, Any]]]) -> None:
        rng, flags = self.rng, self.flags[cid]
        code = self.country[cid]
        country = _BY_CODE[code]
        fk = self.fakers[code]

        first, last = fk.first_name().strip(), fk.last_name().strip()
        street, city, region, postcode, area = self._address(code)
        num = self._new_phone(code, area)
        intl = rng.random() < _INTL_PHONE_RATE
        self.phone_intl[cid] = intl
        phone = self._format_phone(num, code, intl)

        if "under_13" in flags:
            age = rng.uniform(*_AGE_BANDS["under_13"])
        elif "under_16" in flags:
            age = rng.uniform(*_AGE_BANDS["under_16"])
        else:
            age = rng.triangular(*_ADULT_AGE)
        birth = _years_ago(self.as_of, age)
        # Accounts are at most ~6.5 years old and opened at age >= 7.
        max_back = min(2400, int((age - 7) * 365))
        created = self._between(self.as_of_dt - timedelta(days=max_back),
                                self.as_of_dt - timedelta(days=1))
        email = self._email(first, last, birth, flags)

        buf["customers"].append({
            "customer_id": cid, "first_name": first, "last_name": last,
            "email": email, "phone": phone, "phone_country": code,
            "birth_date": birth, "street": street, "city": city,
            "region": region, "postcode": postcode, "country": code,
            "is_eea": code in EEA_COUNTRIES, "created_at": created,
        })
        buf["consents"].append({
            "customer_id": cid,
            "marketing_opt_in": self.marketing[cid],
            "sale_share_opt_out": "sale_share_opt_out" in flags,
            "gpc_signal": "gpc" in flags,
            "eea_ad_consent": self.eea_consent[cid],
            "updated_at": self._between(created, self.as_of_dt - timedelta(hours=1)),
        })

        person = {"first": first, "last": last, "street": street, "city": city,
                  "region": region, "postcode": postcode, "phone": phone,
                  "num": num, "area": area, "email": email}
        delivered = self._orders(cid, country, created, person, buf)
        self._reviews(cid, code, created, delivered, person, buf)
        self._extras(cid, country, created, person, buf)

    def _orders(self, cid, country: _Country, created: datetime, person, buf):
        """Orders with items, payments and shipments; returns delivered
        (sku, delivered_at) pairs for reviews."""
        rng = self.rng
        n_orders = rng.choices(range(7), weights=(27, 32, 20, 11, 6, 2, 2))[0]
        end = self.as_of_dt - timedelta(hours=1)
        times = sorted(self._between(created, end) for _ in range(n_orders))
        delivered: list[tuple[str, datetime]] = []
        fx = _FX[country.currency]
        for ordered_at in times:
            oid = self._next("order")
            n_items = rng.choices((1, 2, 3, 4), weights=(60, 25, 10, 5))[0]
            total = Decimal("0.00")
            skus = []
            for prod in rng.sample(self.products, n_items):
                qty = rng.choices((1, 2, 3), weights=(85, 12, 3))[0]
                unit = (prod["price"] if fx == 1 else
                        (prod["price"] * fx).quantize(Decimal("1"), ROUND_HALF_UP))
                unit = unit.quantize(Decimal("0.01"))
                total += unit * qty
                skus.append(prod["sku"])
                buf["order_items"].append({"order_id": oid, "sku": prod["sku"],
                                           "quantity": qty, "unit_price": unit})
            age_days = (self.as_of_dt - ordered_at).total_seconds() / 86400
            r = rng.random()
            if age_days < 2:
                status = "processing"
            elif r < 0.03:
                status = "cancelled"
            elif r < 0.05:
                status = "refunded"
            elif r < 0.08:
                status = "returned"
            else:
                status = "shipped" if age_days < 7 else "delivered"
            buf["orders"].append({"order_id": oid, "customer_id": cid,
                                  "ordered_at": ordered_at, "total_amount": total,
                                  "currency": country.currency, "status": status})
            if status != "cancelled":
                brand = rng.choices(("visa", "mastercard", "amex", "discover"),
                                    weights=(50, 32, 12, 6 if country.code == "US" else 0))[0]
                buf["payments"].append({
                    "payment_id": self._next("payment"), "order_id": oid,
                    "processor_token": "tok_" + self._token(24),
                    "card_brand": brand, "card_last4": f"{rng.randrange(10000):04d}",
                    "amount": total, "currency": country.currency,
                    "paid_at": ordered_at + timedelta(seconds=rng.randint(3, 300)),
                })
            if status in ("shipped", "delivered", "returned"):
                shipped_at = self._between(ordered_at + timedelta(hours=6),
                                           min(ordered_at + timedelta(days=3), end))
                self._shipment(oid, country, shipped_at, person, buf)
                if status == "delivered":
                    arrived = shipped_at + timedelta(days=rng.randint(1, 5))
                    delivered.extend((s, arrived) for s in skus)
        return delivered

    def _shipment(self, oid, country: _Country, shipped_at, person, buf) -> None:
        rng = self.rng
        if rng.random() < 0.08:  # a gift: a third party's name, address, phone
            fk = self.fakers[country.code]
            name = f"{fk.first_name().strip()} {fk.last_name().strip()}"
            street, city, region, postcode, area = self._address(country.code)
            num = self._new_phone(country.code, area)
            phone = self._format_phone(num, country.code, rng.random() < _INTL_PHONE_RATE)
        else:
            name = f"{person['first']} {person['last']}"
            street, city, region, postcode = (person["street"], person["city"],
                                              person["region"], person["postcode"])
            phone = person["phone"]
        carrier = rng.choice(country.carriers)
        buf["shipments"].append({
            "shipment_id": self._next("shipment"), "order_id": oid,
            "carrier": carrier, "ship_name": name, "ship_street": street,
            "ship_city": city, "ship_region": region, "ship_postcode": postcode,
            "ship_country": country.code, "ship_phone": phone,
            "tracking_number": self._tracking(carrier, country.code),
            "shipped_at": shipped_at,
        })

    def _tracking(self, carrier: str, code: str) -> str:
        """Carrier-shaped tracking number without a 13+ digit run."""
        t = self._token
        if carrier == "UPS":  # 1Z + shipper (3 digits, 2 letters, 1 digit) + 10 digits
            return f"1Z{t(3, _DIGITS)}{t(2, _UPPER)}{t(1, _DIGITS)}{t(10, _DIGITS)}"
        if carrier == "FedEx":
            return t(12, _DIGITS)
        if carrier == "DHL":
            return t(10, _DIGITS)
        if carrier in ("Hermes", "DPD", "GLS", "SEUR", "BRT", "Purolator"):
            return t(4, _UPPER) + t(10, _DIGITS)
        # National posts: UPU S10 format, e.g. RN123456785GB.
        return f"{t(2, _UPPER)}{t(9, _DIGITS)}{code}"

    def _review_text(self, code: str, rating: int, item: str, metal: str) -> tuple[str, str]:
        rng = self.rng
        lang = _LANG_BY_COUNTRY.get(code)
        if lang and rng.random() < 0.6:
            pos_t, neg_t, pos, neg = _LOCAL_TEXT[lang]
            good = rating >= 4
            title = rng.choice(pos_t if good else neg_t)
            body = " ".join(rng.sample(pos if good else neg, 2))
            return title, body
        t = _EN_TEXT
        key = "pos" if rating >= 4 else "mix" if rating == 3 else "neg"
        title = rng.choice(t[f"{key}_title"])
        sents = list(rng.sample(t[key], 2))
        if key != "pos" and rng.random() < 0.4:
            sents.append(rng.choice(t["pos"]))
        body = " ".join(sents).format(item=item, metal=metal, who=rng.choice(_WHO))
        return title, body

    def _review_row(self, cid, code, sku, created_at, body=None) -> dict[str, Any]:
        rng = self.rng
        rid = self._next("review")
        rating = rng.choices((1, 2, 3, 4, 5), weights=(5, 6, 12, 30, 47))[0]
        prod = self._product(sku)
        item = prod["category"].rstrip("s") if prod["category"] != "earrings" else "earrings"
        metal = next((m for m, _ in _METALS if prod["name"].startswith(m)), "metal")
        title, text = self._review_text(code, rating, item, metal.lower())
        has_photo = rng.random() < 0.15
        return {
            "review_id": rid, "customer_id": cid, "sku": sku, "rating": rating,
            "title": title, "body": text if body is None else body,
            "has_photo": has_photo,
            "photo_url": (f"https://media.shop.example/reviews/{rid}/"
                          f"{self._token(16, string.ascii_lowercase + _DIGITS)}.jpg"
                          if has_photo else None),
            "created_at": created_at,
        }

    def _product(self, sku: str) -> dict[str, Any]:
        return self.by_sku[sku]

    def _reviews(self, cid, code, created, delivered, person, buf) -> None:
        rng = self.rng
        end = self.as_of_dt - timedelta(minutes=5)
        for sku, arrived in delivered:
            if rng.random() < 0.18 and arrived < end:
                buf["reviews"].append(self._review_row(
                    cid, code, sku, self._between(arrived, min(arrived + timedelta(days=60), end))))
        for kind in self.planted_reviews.get(cid, ()):
            sku = delivered[0][0] if delivered else rng.choice(self.products)["sku"]
            body = self._planted_body(kind, person)
            row = self._review_row(cid, code, sku, self._between(created, end), body)
            buf["reviews"].append(row)
            self.review_members[kind].append(row["review_id"])
            self.review_author[row["review_id"]] = cid

    def _planted_body(self, kind: str, person) -> str:
        rng = self.rng
        if kind == "review_formula_leading":
            # Cycle characters, then templates: every one shows up early.
            i = self.formula_counter
            self.formula_counter += 1
            bodies = _FORMULA_BODIES["=+-@"[i % 4]]
            return bodies[(i // 4) % len(bodies)]
        if kind == "review_control_leading":
            return rng.choice(_CONTROL_BODIES)
        if kind == "review_contains_email":
            e = person["email"].strip()
            return rng.choice(_EMAIL_BODIES).format(e if rng.random() < 0.5 else e.lower())
        # review_contains_phone: as stored, or as the international form.
        num = person["num"]
        shown = person["phone"] if rng.random() < 0.5 else pn.format_number(
            num, pn.PhoneNumberFormat.INTERNATIONAL)
        return rng.choice(_PHONE_BODIES).format(shown)

    def _extras(self, cid, country: _Country, created, person, buf) -> None:
        """Devices, wishlist, showroom appointments and support calls."""
        rng = self.rng
        end = self.as_of_dt - timedelta(minutes=1)
        for _ in range(rng.choices((0, 1, 2, 3), weights=(30, 40, 20, 10))[0]):
            first_seen = self._between(created - timedelta(days=3), end)
            ua = rng.choices(_UA_TEMPLATES, weights=_UA_WEIGHTS)[0].format(
                v=rng.randint(120, 142), i=rng.randint(16, 18), j=rng.randint(0, 6),
                a=rng.randint(11, 15), f=rng.randint(120, 145))
            if rng.random() < 0.15:
                ip = f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
            else:
                ip = f"{rng.choice(_IPV4_NETS)}.{rng.randint(1, 254)}"
            buf["devices"].append({
                "device_id": self._uuid(), "customer_id": cid,
                "cookie_id": "ck_" + self._token(22), "user_agent": ua,
                "ip_address": ip, "first_seen": first_seen,
                "last_seen": self._between(first_seen, end),
            })
        if rng.random() < 0.30:
            k = rng.randint(1, 6)
            for prod in sorted(rng.sample(self.products, k), key=lambda p: p["sku"]):
                buf["wishlist"].append({"customer_id": cid, "sku": prod["sku"],
                                        "added_at": self._between(created, end)})
        if rng.random() < 0.03:
            day = self.as_of_dt + timedelta(days=rng.randint(-400, 60))
            slot = day.replace(hour=10) + timedelta(minutes=30 * rng.randint(0, 16))
            first, last = person["first"], person["last"]
            full = rng.choice((f"{first} {last}", f"{first} {last}".upper(),
                               f"{first} {last}".lower(), f"{first[0]}. {last}"))
            e = person["email"]
            buf["appointments"].append({
                "appointment_id": self._next("appointment"), "customer_id": cid,
                "showroom": rng.choice(country.showrooms), "scheduled_at": slot,
                "full_name": full,
                "email": rng.choice((e, e.strip(), e.strip().lower())),
            })
        if rng.random() < 0.05:
            for _ in range(rng.randint(1, 2)):
                started = self._between(created, end)
                buf["support_calls"].append({
                    "call_id": self._next("call"), "customer_id": cid,
                    "phone": self._caller_id(person["num"]), "started_at": started,
                    "duration_s": rng.randint(30, 1800),
                    "recording_ref": (f"s3://shop-call-recordings/{started:%Y/%m/%d}/"
                                      f"{self._uuid()}.wav"),
                    "agent_id": f"agt-{rng.randint(1, 60):03d}",
                })

    # ---- result -------------------------------------------------------------

    def planted(self) -> Planted:
        ids = range(1, self.n + 1)
        flags = self.flags
        cust: dict[str, list[int]] = {k: [] for k in CUSTOMER_KINDS}
        for c in ids:
            for k in flags[c]:
                cust[k].append(c)
            if self.country[c] in EEA_COUNTRIES and self.eea_consent[c]:
                cust["eea_with_ad_consent"].append(c)
            if self.marketing[c]:
                cust["marketing_opt_in"].append(c)
            key = "phone_international_format" if self.phone_intl[c] else "phone_national_format"
            cust[key].append(c)
        isolated: dict[str, list[int]] = {}
        for k, members in cust.items():
            allowed = {k} if k in FLAG_KINDS else set()
            isolated[k] = [c for c in members if flags[c] <= allowed]
        reviews = {k: sorted(v) for k, v in self.review_members.items()}
        for k, members in reviews.items():
            isolated[k] = [r for r in members if not flags[self.review_author[r]]]
        return Planted(seed=self.seed, size=self.n, as_of=self.as_of,
                       customers={k: sorted(v) for k, v in cust.items()},
                       reviews=reviews, isolated=isolated)
