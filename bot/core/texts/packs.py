"""The titles and descriptions of the worker's shipped packs (backends/local/packs/shipped/),
as chat wording, so `/packs` shows them in the reader's language (issue 17).

A pack's words come from the backend; these keys (`pack.<slug>.title`, `.description`) only
translate them when the backend's English is exactly the one here, so an operator's pack, an
Astria gallery pack or a shipped pack whose file was edited shows the backend's own words.
tests/test_pack_texts.py keeps this list equal to the shipped files.
"""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    "pack.black-and-white.title": "Black and white",
    "pack.black-and-white.description": (
        "Timeless monochrome portraits: fine-art studio light, street scenes and film grain."
    ),
    "pack.cinematic.title": "Cinematic",
    "pack.cinematic.description": (
        "Frames from a film that was never made: wide anamorphic shots, moody colour grades."
    ),
    "pack.corporate-headshots.title": "Corporate headshots",
    "pack.corporate-headshots.description": (
        "Business portraits for LinkedIn and company pages: suits, offices, clean backdrops."
    ),
    "pack.dating-profile.title": "Dating profile",
    "pack.dating-profile.description": (
        "Natural, friendly photos for dating apps: cafes, city walks, hobbies and real smiles."
    ),
    "pack.fashion-editorial.title": "Fashion editorial",
    "pack.fashion-editorial.description": (
        "Magazine-style fashion shots: bold outfits, coloured light and strong poses."
    ),
    "pack.golden-hour.title": "Outdoor golden hour",
    "pack.golden-hour.description": (
        "Outdoor portraits in warm evening light: fields, beaches, parks and rooftops."
    ),
    "pack.studio-portraits.title": "Studio portraits",
    "pack.studio-portraits.description": (
        "Classic photo-studio portraits: coloured paper backdrops, softbox and rim light."
    ),
    "pack.travel.title": "Travel",
    "pack.travel.description": (
        "Holiday photos around the world: landmarks, old streets, mountains and beaches."
    ),
}
