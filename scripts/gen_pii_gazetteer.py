#!/usr/bin/python3
"""Generates src/pii/pii_gazetteer_data.c: the name and place word lists of the PII guard, compiled
into the binary so `slm` needs no data files.

Source: Faker 0.9.3 (Debian's python3-fake-factory, MIT licence), every Latin-script locale's
person and address providers (first names, last names, city names, city prefixes/suffixes,
street types, countries), plus a short hand-written list of real major cities and street words
of locales Faker lacks. Run with the system python that has faker:
    apt-get install python3-fake-factory && /usr/bin/python3 scripts/gen_pii_gazetteer.py
Keys are lower case (ASCII and Latin-1 letters folded), sorted bytewise for binary search."""
import importlib
import os
import pkgutil
import sys
import unicodedata

from faker.providers import address, person

FIRST = ('first_names', 'first_names_female', 'first_names_male', 'first_romanized_names',
         'first_romanized_names_female', 'first_romanized_names_male', 'middle_names',
         'middle_names_female', 'middle_names_male', 'first_names_est', 'first_names_female_est',
         'first_names_male_est')
LAST = ('last_names', 'last_names_female', 'last_names_male', 'male_last_names', 'unisex_last_names',
        'last_romanized_names', 'last_names_est')
CITY = ('cities', 'city_names', 'real_city_names', 'towns', 'metropolitan_cities', 'states', 'provinces',
        'regions', 'departments', 'cantons')
CITY_PREFIX = ('city_prefixes', 'city_prefs')
CITY_SUFFIX = ('city_suffixes', 'city_suffixies', 'town_suffixes')
STREET = ('street_suffixes', 'street_suffixes_long', 'street_suffixes_short', 'street_prefixes',
          'street_prefixes_long', 'street_prefixes_short', 'road_suffixes')
COUNTRY = ('countries',)

EXTRA_CITY = """London Paris Berlin Madrid Rome Roma Milan Milano Naples Turin Vienna Wien Zurich Zürich Geneva
Genève Basel Bern Brussels Bruxelles Amsterdam Rotterdam Utrecht Antwerp Antwerpen Lisbon Lisboa Porto Dublin
Edinburgh Glasgow Manchester Birmingham Liverpool Leeds Bristol Cardiff Belfast Oxford Cambridge Copenhagen
København Stockholm Oslo Helsinki Warsaw Warszawa Krakow Kraków Prague Praha Budapest Athens Istanbul Moscow
Kyiv Kiev Bucharest Sofia Belgrade Zagreb Ljubljana Munich München Hamburg Cologne Köln Frankfurt Stuttgart
Düsseldorf Leipzig Dresden Hannover Nuremberg Nürnberg Bremen Essen Dortmund Bonn Lyon Marseille Toulouse
Nice Nantes Strasbourg Bordeaux Lille Rennes Montpellier Grenoble Barcelona Valencia Seville Sevilla Bilbao
Malaga Málaga Zaragoza Florence Firenze Venice Venezia Bologna Genoa Genova Palermo New York Los Angeles Chicago Houston
Phoenix Philadelphia San Antonio San Diego Dallas San Jose Austin Jacksonville Columbus Charlotte Indianapolis
Seattle Denver Boston Detroit Nashville Portland Memphis Louisville Baltimore Milwaukee Albuquerque Tucson
Fresno Sacramento Atlanta Miami Oakland Minneapolis Tulsa Cleveland Pittsburgh Cincinnati Orlando Tampa
Honolulu Anchorage Toronto Montreal Montréal Vancouver Calgary Ottawa Edmonton Quebec Québec Winnipeg Sydney
Melbourne Brisbane Perth Adelaide Auckland Wellington Tokyo Osaka Kyoto Seoul Beijing Shanghai Hong Kong
Singapore Bangkok Mumbai Delhi Bangalore Chennai Kolkata Karachi Lahore Dubai Cairo Lagos Nairobi
Johannesburg Cape Town Mexico City Guadalajara Monterrey Bogotá Bogota Lima Santiago Buenos Aires
São Paulo Sao Paulo Rio de Janeiro Caracas Quito Havana Tel Aviv Jerusalem Tehran Riyadh Doha""".split('\n')

EXTRA_STREET = """straße strasse str. weg gasse platz ring allee damm ufer chaussee steig pfad markt hof
rue avenue boulevard chemin impasse allée place quai route cours passage square voie sentier
calle avenida plaza paseo carrera camino via viale piazza corso vicolo largo strada
straat laan plein gracht kade dijk singel steeg rua travessa praça ulica aleja gatan vägen gata gade vej
street st. road rd. lane ln. drive dr. court ct. place pl. square sq. terrace crescent close way
boulevard blvd. avenue ave. highway hwy. parkway pkwy. circle cir. trail alley row mews""".split()

LATIN_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ -'.")


def latin(s):
    return all(c in LATIN_OK or 0xC0 <= ord(c) <= 0x24F for c in s)


def fold(s):
    # lower case as the C side folds: ASCII and the Latin-1/Latin Extended-A letters Python lowers
    return s.lower()


def collect(pkg, modname, fields):
    out = set()
    for m in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module('faker.providers.%s.%s' % (modname, m.name))
        for cls in mod.Provider.__mro__:
            for f in fields:
                v = vars(cls).get(f)
                if isinstance(v, dict):
                    v = list(v.keys())
                if isinstance(v, (list, tuple)):
                    for s in v:
                        if isinstance(s, str) and s.strip() and latin(s) and len(s) <= 40:
                            out.add(unicodedata.normalize('NFC', s.strip()))
    return out


def c_array(name, words):
    keys = sorted({fold(w).encode('utf-8') for w in words})
    lines = ['const char *const %s[] = {' % name]
    row = '   '
    for k in keys:
        lit = ' "%s",' % ''.join(chr(b) if 32 <= b < 127 and b not in (34, 92) else '\\%03o' % b for b in k)
        if len(row) + len(lit) > 110:
            lines.append(row)
            row = '   '
        row += lit
    lines.append(row)
    lines.append('};')
    lines.append('const size_t %s_count = %d;' % (name, len(keys)))
    return '\n'.join(lines), len(keys)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'pii', 'pii_gazetteer_data.c')
    first = collect(person, 'person', FIRST)
    last = collect(person, 'person', LAST)
    city = collect(address, 'address', CITY)
    # the hand list is space separated; these multi-word names are kept whole
    extra = []
    for line in EXTRA_CITY:
        words = line.split(' ')
        i = 0
        while i < len(words):
            w = words[i]
            for n in (3, 2):
                cand = ' '.join(words[i:i + n])
                if cand in ('New York', 'Los Angeles', 'San Antonio', 'San Diego', 'San Jose', 'Hong Kong',
                            'Cape Town', 'Mexico City', 'Buenos Aires', 'São Paulo', 'Sao Paulo',
                            'Rio de Janeiro', 'Tel Aviv'):
                    extra.append(cand)
                    i += n
                    break
            else:
                extra.append(w)
                i += 1
    city |= set(extra)
    city_prefix = collect(address, 'address', CITY_PREFIX)
    city_suffix = collect(address, 'address', CITY_SUFFIX)
    street = collect(address, 'address', STREET) | set(EXTRA_STREET)
    country = collect(address, 'address', COUNTRY)
    parts = ['/* Generated by scripts/gen_pii_gazetteer.py from Faker 0.9.3 (MIT) and hand lists. Do not edit. */',
             '#include <stddef.h>', '']
    total = {}
    for name, words in (('pii_gz_first', first), ('pii_gz_last', last), ('pii_gz_city', city),
                        ('pii_gz_city_prefix', city_prefix), ('pii_gz_city_suffix', city_suffix),
                        ('pii_gz_street', street), ('pii_gz_country', country)):
        text, n = c_array(name, words)
        parts.append(text)
        parts.append('')
        total[name] = n
    with open(out_path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(parts))
    print(out_path, total)


if __name__ == '__main__':
    main()
