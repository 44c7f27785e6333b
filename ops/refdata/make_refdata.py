#!/usr/bin/env python3
"""Writes the example reference data of DOMAIN.md section 7 (hts.csv,
violators.csv, countries.csv), deterministically (same arguments, same bytes).

    ops/refdata/make_refdata.py                      # the committed example set
    ops/refdata/make_refdata.py --hts-rows 30000 --violators 100000 --out DIR
                                                     # a large set for the load benchmark

The example set:
- hts.csv: rule rows (2/4/6/8-digit prefixes: PGA chapters, excise goods,
  AD/CVD and quota lines, WATCH rows with points for counterfeit-prone goods)
  and 10-digit statistical lines, among them every code that `parcelrisk gen`
  uses (pipeline/gen/gen.c, pr_items), with unit-value floors for the watched ones.
- violators.csv: a few hundred synthetic rows of each kind, with legal forms
  and spelling variety so that matching through normalization is exercised.
  A few of the generator's shipper stems and "<stem> Store <n>" sellers are
  listed (with countries chosen so that only a small share of generated
  declarations hit them), so the demo shows KNOWN_VIOLATOR at a small rate.
- countries.csv: every ISO 3166 alpha-2 code, most with 0 points.
Stdlib only. Every name and address here is made up.
"""
import argparse
import csv
import os
import random
import re
import sys

SEED = 20251127

# ----------------------------------------------------------------- HTS

# The codes the generator uses (pipeline/gen/gen.c pr_items) with the typical unit
# price there; every one must be a known 10-digit line.
GEN_ITEMS = [
    ("6109100012", "Men's or boys' T-shirts, knitted, of cotton", 900),
    ("6204624011", "Women's trousers of cotton, not knitted, blue denim", 2200),
    ("6110202079", "Sweaters and pullovers of cotton, knitted, other", 2500),
    ("6402993165", "Footwear, outer soles and uppers of rubber or plastics, other", 3500),
    ("6404110000", "Sports footwear, outer soles of rubber or plastics, uppers of textile", 4000),
    ("4202920807", "Backpacks with outer surface of textile materials", 2800),
    ("4202210000", "Handbags with outer surface of leather", 6000),
    ("7117190000", "Imitation jewelry of base metal, other", 700),
    ("9102110000", "Wrist watches, battery powered, mechanical display only", 3000),
    ("8518300000", "Headphones and earphones, whether or not combined with a microphone", 2500),
    ("8517620000", "Machines for the reception, conversion and transmission of data (routers)", 4500),
    ("8504405000", "Static converters: power supplies and chargers for telephones", 800),
    ("8544429000", "Insulated electric conductors fitted with connectors, other", 300),
    ("3926909985", "Other articles of plastics, other", 400),
    ("9503000073", "Toys, other, not having a spring mechanism", 1500),
    ("9504500000", "Video game consoles and machines, and parts", 3500),
    ("3304990000", "Beauty or skin-care preparations, other", 1800),
    ("3305100000", "Shampoos", 900),
    ("6302600010", "Toilet and kitchen linen, terry towels of cotton", 1200),
    ("9405410000", "Luminaires, photovoltaic, designed for LED light sources", 2000),
    ("8471300100", "Portable automatic data processing machines, weighing not more than 10 kg", 15000),
    ("9004100000", "Sunglasses", 1100),
    ("6505009040", "Hats and headgear, knitted, of man-made fibers", 800),
    ("4901990000", "Printed books, brochures and leaflets, other", 1500),
    ("2106909998", "Food preparations not elsewhere specified: dietary supplements", 2500),
    ("3004909290", "Medicaments in measured doses, other (vitamin preparations)", 2000),
    ("8713900000", "Carriages for disabled persons, not mechanically propelled", 5000),
    ("8211910000", "Table knives having fixed blades, sets", 2500),
    ("6912004810", "Ceramic tableware and kitchenware, mugs, other than porcelain", 900),
    ("2402200000", "Cigarettes containing tobacco", 1200),
]

# Floors (unit_value_floor_cents) of the watched generator lines: about 0.7 of
# the typical price, so that UNDERVALUED (unit value below floor x 0.5) fires
# on a few percent of those lines only.
GEN_FLOORS = {
    "6402993165": 2500, "6404110000": 2800, "4202210000": 4200, "4202920807": 1800,
    "9102110000": 2000, "8518300000": 1600, "8504405000": 500, "3304990000": 1200,
    "9004100000": 700, "8471300100": 9000,
}

# Rule rows: code, description, flags, floor, points.
PREFIX_ROWS = [
    ("01", "Live animals", "PGA_USDA", "", ""),
    ("02", "Meat and edible meat offal", "PGA_USDA", "", ""),
    ("03", "Fish and crustaceans, molluscs", "PGA_FDA", "", ""),
    ("030462", "Frozen fillets of catfish (Pangasius)", "ADCVD", "", ""),
    ("04", "Dairy produce; birds' eggs; natural honey", "PGA_FDA", "", ""),
    ("0402", "Milk and cream, concentrated or sweetened", "QUOTA", "", ""),
    ("0406", "Cheese and curd", "QUOTA", "", ""),
    ("0409", "Natural honey", "ADCVD", "", ""),
    ("06", "Live trees and other plants; cut flowers", "PGA_USDA", "", ""),
    ("07", "Edible vegetables and certain roots and tubers", "PGA_FDA|PGA_USDA", "", ""),
    ("070320", "Garlic, fresh or chilled", "ADCVD", "", ""),
    ("08", "Edible fruit and nuts", "PGA_FDA|PGA_USDA", "", ""),
    ("09", "Coffee, tea, mate and spices", "PGA_FDA", "", ""),
    ("10", "Cereals", "PGA_USDA", "", ""),
    ("12", "Oil seeds and oleaginous fruits", "PGA_USDA", "", ""),
    ("1202", "Peanuts, not roasted or otherwise cooked", "QUOTA", "", ""),
    ("16", "Preparations of meat, fish or crustaceans", "PGA_FDA", "", ""),
    ("17", "Sugars and sugar confectionery", "PGA_FDA", "", ""),
    ("1701", "Cane or beet sugar", "QUOTA", "", ""),
    ("18", "Cocoa and cocoa preparations", "PGA_FDA", "", ""),
    ("19", "Preparations of cereals, flour, starch or milk", "PGA_FDA", "", ""),
    ("20", "Preparations of vegetables, fruit, nuts", "PGA_FDA", "", ""),
    ("200811", "Peanuts, prepared or preserved (peanut butter)", "QUOTA", "", ""),
    ("2103", "Sauces and preparations therefor; condiments", "PGA_FDA", "", ""),
    ("2106", "Food preparations not elsewhere specified or included", "PGA_FDA", "", ""),
    ("22", "Beverages, spirits and vinegar", "EXCISE|PGA_FDA", "", ""),
    ("2209", "Vinegar", "", "", ""),
    ("24", "Tobacco and manufactured tobacco substitutes", "EXCISE|PGA_FDA", "", ""),
    ("2402", "Cigars, cheroots, cigarillos and cigarettes", "EXCISE", "", ""),
    ("2403", "Other manufactured tobacco", "EXCISE", "", ""),
    ("2404", "Products containing nicotine intended for inhalation without combustion", "PGA_FDA", "", ""),
    ("30", "Pharmaceutical products", "PGA_FDA", "", ""),
    ("3303", "Perfumes and toilet waters", "PGA_FDA|WATCH", "", "100"),
    ("3304", "Beauty or make-up preparations, skin-care preparations", "PGA_FDA|WATCH", "", "100"),
    ("3305", "Preparations for use on the hair", "PGA_FDA", "", ""),
    ("3307", "Shaving preparations, deodorants, bath preparations", "PGA_FDA", "", ""),
    ("3604", "Fireworks, signalling flares", "PGA_CPSC", "", ""),
    ("4011", "New pneumatic tires, of rubber", "ADCVD", "", ""),
    ("4202", "Trunks, suitcases, handbags, wallets and similar containers", "WATCH", "", "200"),
    ("420221", "Handbags with outer surface of leather", "WATCH", "3000", "250"),
    ("44", "Wood and articles of wood", "PGA_USDA", "", ""),
    ("4412", "Plywood, veneered panels and similar laminated wood", "ADCVD", "", ""),
    ("5201", "Cotton, not carded or combed", "QUOTA", "", ""),
    ("6402", "Other footwear with outer soles and uppers of rubber or plastics", "WATCH", "", "150"),
    ("6403", "Footwear with uppers of leather", "WATCH", "", "150"),
    ("6404", "Footwear with uppers of textile materials", "WATCH", "", "100"),
    ("6912", "Ceramic tableware, kitchenware (lead and cadmium release)", "PGA_FDA", "", ""),
    ("7304", "Tubes, pipes and hollow profiles, seamless, of iron or steel", "ADCVD", "", ""),
    ("7306", "Other tubes, pipes and hollow profiles, of iron or steel", "ADCVD", "", ""),
    ("7317", "Nails, tacks, staples of iron or steel", "ADCVD", "", ""),
    ("731815", "Threaded screws and bolts of iron or steel, other", "ADCVD", "", ""),
    ("732410", "Sinks and wash basins, of stainless steel", "ADCVD", "", ""),
    ("7604", "Aluminum bars, rods and profiles", "ADCVD", "", ""),
    ("7607", "Aluminum foil, thickness not exceeding 0.2 mm", "ADCVD", "", ""),
    ("850440", "Static converters (chargers, power supplies)", "PGA_FCC|WATCH", "300", "150"),
    ("851762", "Machines for the reception, conversion and transmission of data", "PGA_FCC", "", ""),
    ("8518", "Microphones, loudspeakers, headphones and earphones", "PGA_FCC|WATCH", "", "100"),
    ("8525", "Transmission apparatus; television and digital cameras", "PGA_FCC", "", ""),
    ("8527", "Reception apparatus for radio broadcasting", "PGA_FCC", "", ""),
    ("8528", "Monitors and projectors; television receivers", "PGA_FCC", "", ""),
    ("8541", "Semiconductor devices; photovoltaic cells", "", "", ""),
    ("854142", "Photovoltaic cells not assembled in modules", "ADCVD", "", ""),
    ("854143", "Photovoltaic cells assembled in modules or made up into panels", "ADCVD", "", ""),
    ("8713", "Carriages for disabled persons", "PGA_FDA", "", ""),
    ("900410", "Sunglasses", "PGA_FDA|WATCH", "", "100"),
    ("9018", "Instruments and appliances used in medical sciences", "PGA_FDA", "", ""),
    ("9021", "Orthopedic appliances; hearing aids", "PGA_FDA", "", ""),
    ("9101", "Wrist watches with case of precious metal", "WATCH", "5000", "300"),
    ("9102", "Wrist watches, other", "WATCH", "1500", "250"),
    ("9113", "Watch straps, watch bands and watch bracelets", "WATCH", "", ""),
    ("940350", "Wooden furniture of a kind used in the bedroom", "ADCVD", "", ""),
    ("9503", "Toys; scale models; puzzles", "PGA_CPSC", "", ""),
    ("950450", "Video game consoles and machines", "PGA_FCC", "", ""),
    ("9505", "Festive, carnival or other entertainment articles", "", "", ""),
]

# Further 10-digit statistical lines: code, description, flags, floor.
STAT_LINES = [
    ("0106190195", "Live mammals, other (pets)", "", ""),
    ("0302140000", "Atlantic salmon and Danube salmon, fresh or chilled", "", ""),
    ("0304620020", "Frozen fillets of Pangasius", "", ""),
    ("0402105000", "Milk powder, fat not over 1.5%, other", "", ""),
    ("0406904600", "Cheese, other, containing cow's milk", "", ""),
    ("0409000035", "Natural honey, white or lighter, retail containers", "", ""),
    ("0409000045", "Natural honey, extra light amber", "", ""),
    ("0409000056", "Natural honey, light amber", "", ""),
    ("0603110060", "Roses, fresh cut, other", "", ""),
    ("0703200010", "Garlic, whole bulbs", "", ""),
    ("0703200020", "Garlic, peeled cloves", "", ""),
    ("0703200090", "Garlic, other", "", ""),
    ("0801320000", "Cashew nuts, shelled", "", ""),
    ("0802120015", "Almonds, shelled, blanched", "", ""),
    ("0901210035", "Coffee, roasted, not decaffeinated, retail containers", "", ""),
    ("0902109000", "Green tea, packings not exceeding 3 kg, other", "", ""),
    ("0904110000", "Pepper, neither crushed nor ground", "", ""),
    ("1006309055", "Rice, semi-milled or wholly milled, other", "", ""),
    ("1202420000", "Peanuts, shelled", "", ""),
    ("1701999000", "Cane or beet sugar, refined, other", "", ""),
    ("1704909000", "Sugar confectionery not containing cocoa, other", "", ""),
    ("1806329000", "Chocolate in blocks or bars, not filled, other", "", ""),
    ("1905310049", "Sweet biscuits, other", "", ""),
    ("2008111000", "Peanut butter and paste", "", ""),
    ("2103909000", "Sauces and condiments, other", "", ""),
    ("2106909997", "Food preparations, protein concentrates, other", "", ""),
    ("2202100000", "Waters containing added sugar or flavored (soft drinks)", "", ""),
    ("2203000030", "Beer made from malt, containers not over 4 liters", "", ""),
    ("2204215000", "Wine, still, containers not over 2 liters", "", ""),
    ("2208303000", "Whiskies, Scotch and Irish", "", ""),
    ("2208601000", "Vodka, containers not over 4 liters", "", ""),
    ("2209000000", "Vinegar and substitutes for vinegar", "", ""),
    ("2402108000", "Cigars, cheroots and cigarillos containing tobacco", "", ""),
    ("2403110000", "Water pipe tobacco", "", ""),
    ("2404120000", "Nicotine products for inhalation without combustion (e-liquids)", "", ""),
    ("3004201000", "Medicaments containing antibiotics, in measured doses", "", ""),
    ("3006500000", "First-aid boxes and kits", "", ""),
    ("3303003000", "Perfumes and toilet waters", "", "1500"),
    ("3304100000", "Lip make-up preparations", "", "600"),
    ("3304200000", "Eye make-up preparations", "", "600"),
    ("3304300000", "Manicure or pedicure preparations", "", ""),
    ("3304910010", "Powders, face and body", "", ""),
    ("3305900000", "Preparations for use on the hair, other", "", ""),
    ("3307100000", "Pre-shave, shaving or after-shave preparations", "", ""),
    ("3307200000", "Personal deodorants and antiperspirants", "", ""),
    ("3401110000", "Soap for toilet use", "", ""),
    ("3604100000", "Fireworks", "", ""),
    ("3924104000", "Tableware and kitchenware of plastics", "", ""),
    ("3926400010", "Statuettes and other ornamental articles of plastics", "", ""),
    ("4011101010", "New pneumatic radial tires, passenger cars", "", ""),
    ("4011101050", "New pneumatic tires, passenger cars, other", "", ""),
    ("4011201005", "New pneumatic radial tires, buses or trucks", "", ""),
    ("4011500000", "New pneumatic tires, of a kind used on bicycles", "", ""),
    ("4202119000", "Trunks and suitcases with outer surface of leather, other", "", ""),
    ("4202221500", "Handbags with outer surface of plastic sheeting", "", "1000"),
    ("4202316000", "Wallets and pocket articles with outer surface of leather", "", "1500"),
    ("4203300000", "Belts and bandoliers of leather", "", ""),
    ("4412332000", "Plywood, outer ply of non-coniferous wood, other", "", ""),
    ("4421999880", "Other articles of wood, other", "", ""),
    ("4911100080", "Trade advertising material and catalogues, other", "", ""),
    ("5201001800", "Cotton, staple length under 28.575 mm", "", ""),
    ("6104620011", "Women's trousers of cotton, knitted", "", ""),
    ("6115956000", "Socks of cotton, knitted", "", ""),
    ("6203424011", "Men's trousers of cotton, blue denim", "", ""),
    ("6205202016", "Men's shirts of cotton, not knitted", "", ""),
    ("6302600020", "Toilet and kitchen linen, terry towels of cotton, other", "", ""),
    ("6307909891", "Made-up textile articles, other (face masks)", "", ""),
    ("6402991831", "Footwear of rubber or plastics, other, protective", "", ""),
    ("6403996075", "Footwear with uppers of leather, other, for women", "", "3000"),
    ("6404199060", "Footwear with uppers of textile materials, other", "", ""),
    ("6505001540", "Hats of cotton, knitted", "", ""),
    ("6911104550", "Porcelain tableware, other", "", ""),
    ("7113115000", "Jewelry of silver, other", "", ""),
    ("7117199000", "Imitation jewelry of base metal, other, other", "", ""),
    ("7304290061", "Casing and tubing of steel, seamless, other", "", ""),
    ("7306301000", "Welded tubes and pipes of iron or steel, wall thickness under 1.65 mm", "", ""),
    ("7306305025", "Welded tubes and pipes of iron or steel, other", "", ""),
    ("7306611000", "Welded tubes of square cross section", "", ""),
    ("7317006560", "Nails of iron or steel, other", "", ""),
    ("7318152066", "Bolts of iron or steel, with hexagonal heads", "", ""),
    ("7323930045", "Kitchenware of stainless steel, other", "", ""),
    ("7324100010", "Sinks and wash basins of stainless steel, drawn", "", ""),
    ("7604101000", "Aluminum bars and rods, not alloyed", "", ""),
    ("7604293010", "Aluminum alloy profiles, hollow", "", ""),
    ("7607113000", "Aluminum foil, rolled but not further worked, thickness under 0.01 mm", "", ""),
    ("7615102015", "Aluminum cooking and kitchen ware, cast", "", ""),
    ("8215200000", "Sets of assorted articles of cutlery", "", ""),
    ("8471607000", "Keyboards for automatic data processing machines", "", ""),
    ("8471704065", "Storage units, other", "", ""),
    ("8504409580", "Static converters, other", "", "300"),
    ("8507600020", "Lithium-ion batteries, other", "", ""),
    ("8517130000", "Smartphones", "", "8000"),
    ("8518220000", "Multiple loudspeakers, mounted in the same enclosure", "", ""),
    ("8525891000", "Television cameras, digital cameras, other", "", ""),
    ("8528520000", "Monitors capable of connecting to a computer", "", ""),
    ("8539520000", "LED lamps", "", ""),
    ("8541430010", "Photovoltaic cells assembled in modules", "", ""),
    ("8543400000", "Electronic cigarettes and similar personal electric vaporizing devices", "", ""),
    ("8712002500", "Bicycles with wheels over 63.5 cm in diameter", "", ""),
    ("8714100050", "Parts and accessories of motorcycles, other", "", ""),
    ("9018390050", "Catheters, cannulae and the like, other", "", ""),
    ("9019101000", "Massage apparatus, electric", "", ""),
    ("9021390000", "Artificial parts of the body, other", "", ""),
    ("9101114000", "Wrist watches with case of precious metal, battery powered", "", "10000"),
    ("9102122000", "Wrist watches, battery powered, optoelectronic display", "", ""),
    ("9113204000", "Watch straps of base metal", "", ""),
    ("9113904000", "Watch straps of leather", "", ""),
    ("9403509041", "Wooden furniture of a kind used in the bedroom, beds", "", ""),
    ("9404901000", "Pillows, cushions and similar furnishings", "", ""),
    ("9503000013", "Dolls representing only human beings", "", ""),
    ("9503000090", "Toys, other", "", ""),
    ("9504904000", "Game machines, other than coin-operated", "", ""),
    ("9505106000", "Christmas ornaments, of plastics", "", ""),
    ("9506626000", "Inflatable balls", "", ""),
    ("9603210000", "Toothbrushes", "", ""),
    ("9615119000", "Combs and hair slides of hard rubber or plastics, other", "", ""),
]

# Statistical suffixes under a few 8-digit lines (the schedule splits apparel
# and footwear by gender, size and fiber). code8, description, suffixes.
SUFFIX_FAMILIES = [
    ("61091000", "T-shirts, knitted, of cotton",
     ["04", "07", "11", "14", "18", "23", "27", "37", "40", "45", "60", "65", "70"]),
    ("61102020", "Sweaters and pullovers, knitted, of cotton",
     ["05", "10", "15", "20", "25", "30", "35", "41", "44", "46", "49", "51", "55", "67", "69", "77"]),
    ("62046240", "Women's or girls' trousers of cotton, not knitted",
     ["06", "11", "16", "21", "26", "31", "36", "41", "46", "51", "56", "61", "66"]),
    ("64029931", "Footwear of rubber or plastics, other",
     ["35", "45", "60", "65", "71", "75", "80", "85", "90"]),
    ("42029208", "Containers with outer surface of textile materials",
     ["09", "10", "15", "20", "25", "30", "40", "50", "60", "90"]),
    ("95030000", "Toys, scale models and puzzles",
     ["11", "21", "23", "29", "35", "55", "71", "75", "79", "85"]),
    ("85171300", "Telephones for cellular networks",
     ["10", "20", "30"]),
    ("39269099", "Other articles of plastics",
     ["10", "20", "50", "75", "80"]),
    ("63079098", "Made-up textile articles, other",
     ["05", "10", "20", "70", "89"]),
    ("73239300", "Table, kitchen or household articles of stainless steel",
     ["15", "35", "60", "80"]),
]


def hts_rows():
    rows = []
    for code, desc, flags, floor, points in PREFIX_ROWS:
        rows.append((code, desc, flags, floor, points))
    for code, desc, _unit in GEN_ITEMS:
        rows.append((code, desc, "", str(GEN_FLOORS.get(code, "")), ""))
    for code, desc, flags, floor in STAT_LINES:
        rows.append((code, desc, flags, floor, ""))
    seen = {r[0] for r in rows}
    for code8, desc, suffixes in SUFFIX_FAMILIES:
        for sfx in suffixes:
            code = code8 + sfx
            if code not in seen:
                seen.add(code)
                rows.append((code, f"{desc}, statistical suffix {sfx}", "", "", ""))
    check_unique([r[0] for r in rows], "hts")
    return rows


def check_unique(values, what):
    seen = set()
    for v in values:
        if v in seen:
            sys.exit(f"make_refdata: duplicate {what} {v}")
        seen.add(v)


# ----------------------------------------------------------- violators

# Mirror of pr_norm_name / pr_norm_address (pipeline/domain/normalize.c), used to
# keep accidental collisions with the generator's parties out of the data.
LEGAL = {"CO", "LTD", "LLC", "INC", "CORP", "LIMITED", "COMPANY", "GMBH", "PLC", "SA", "AG"}
ABBREV = {"STREET": "ST", "AVENUE": "AVE", "ROAD": "RD", "APARTMENT": "APT", "SUITE": "STE",
          "BOULEVARD": "BLVD", "DRIVE": "DR", "LANE": "LN", "PARKWAY": "PKWY", "FLOOR": "FL",
          "BUILDING": "BLDG"}


def norm_text(s):
    s = s.replace(".", "").replace("'", "").upper()
    return " ".join(re.sub(r"[^A-Z0-9\x80-\U0010ffff]", " ", s).split())


def norm_name(s):
    toks = norm_text(s).split()
    while toks and toks[-1] in LEGAL:
        toks.pop()
    return " ".join(toks)


def norm_address(s):
    return " ".join(ABBREV.get(t, t) for t in norm_text(s).split())


# The generator's parties (pipeline/gen/gen.c).
GEN_STEMS = ["Shenzhen Bright Trading", "Yiwu Global Commerce", "Guangzhou Star Apparel",
             "Hangzhou Sunrise E-Commerce", "Dongguan Everlight Electronics",
             "Hong Kong Pacific Express", "Hanoi Lotus Export", "Mumbai Crafts Export",
             "Seoul Beauty Direct", "Osaka Goods Online", "Taipei Tech Parts",
             "London Vintage Store", "Berlin Maker Supply", "Istanbul Bazaar Online"]
GEN_FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
             "David", "Elizabeth", "William", "Barbara", "Maria", "Jose", "Wei", "Priya",
             "Carlos", "Aisha", "Kenji", "Olga", "Ahmed", "Sofia", "Luis", "Nguyen", "Fatima",
             "Daniel", "Grace", "Omar"]
GEN_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
            "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas",
            "Taylor", "Moore", "Lee", "Chen", "Patel", "Kim", "Nguyen", "Khan", "O'Brien",
            "Murphy", "Rossi", "Novak", "Silva"]
GEN_STREETS = ["Elm", "Oak", "Maple", "Main", "Cedar", "Pine", "Washington", "Lake", "Hill",
               "Park", "Sunset", "River"]

# Deliberate hits. Shipper countries are chosen so that only a small share of
# generated parcels match (the generator gives the shipper the origin country):
# the same key twice merges into "HK:2;VN:1".
DELIBERATE = [
    ("SHIPPER", "Shenzhen Bright Trading Co., Ltd.", "Bao'an District, Shenzhen", "HK", 2,
     "counterfeit footwear seizures", "2023-04-12"),
    ("SHIPPER", "SHENZHEN BRIGHT TRADING LIMITED", "", "VN", 1,
     "transshipment of AD/CVD goods", "2024-09-30"),
    ("SHIPPER", "Dongguan Everlight Electronics Co. Ltd", "Chang'an Town, Dongguan", "KR", 3,
     "uncertified chargers, repeated", "2022-11-03"),
    ("SHIPPER", "Istanbul Bazaar Online Ltd", "", "TR", 1, "undervaluation", "2024-02-19"),
    ("SELLER", "Yiwu Global Commerce Store 17", "Online", "", 2, "counterfeit handbags",
     "2024-06-01"),
    ("SELLER", "Guangzhou Star Apparel Store 203", "Online", "CN", 1, "misdescribed goods",
     "2023-08-15"),
    ("SELLER", "Seoul Beauty Direct Store 42", "Online", "", 1, "unapproved cosmetics",
     "2025-01-20"),
    ("SELLER", "Osaka Goods Online Store 318", "Online", "JP", 2, "counterfeit watches",
     "2024-12-02"),
    ("SELLER", "Hong Kong Pacific Express Store 7", "Online", "", 3, "split shipments",
     "2025-03-11"),
    ("CONSIGNEE", "Northgate Reship Services Inc.", "1234 Elm Street, Apt. 5B", "US", 3,
     "reshipper for split shipments", "2024-05-07"),
    ("CONSIGNEE", "Olga Novak", "", "US", 1, "repeated undervaluation", "2025-02-14"),
    ("ADDRESS", "", "1234 Elm Street, Apt. 5B", "US", 2, "reshipping drop address",
     "2024-05-07"),
    ("ADDRESS", "", "100 Elm Street", "US", 1, "address cluster under review", "2025-06-30"),
]

CITIES_CN = ["Ningbo", "Xiamen", "Suzhou", "Wenzhou", "Foshan", "Quanzhou", "Jinhua", "Tianjin",
             "Qingdao", "Shantou", "Zhongshan", "Huizhou", "Changsha", "Hefei", "Nanjing",
             "Chengdu", "Wuhan", "Jieyang", "Putian", "Taizhou"]
CITIES_OTHER = [("Hong Kong", "HK"), ("Kowloon", "HK"), ("Ho Chi Minh City", "VN"),
                ("Haiphong", "VN"), ("Delhi", "IN"), ("Surat", "IN"), ("Karachi", "PK"),
                ("Dhaka", "BD"), ("Bangkok", "TH"), ("Jakarta", "ID"), ("Bursa", "TR"),
                ("Izmir", "TR"), ("Busan", "KR"), ("Taichung", "TW"), ("Kuala Lumpur", "MY"),
                ("Manila", "PH"), ("Dubai", "AE"), ("Tijuana", "MX"), ("Lagos", "NG"),
                ("Leipzig", "DE")]
ADJECTIVES = ["Golden", "Silver", "Harvest", "Rising", "Evergreen", "Bluewave", "Redstone",
              "Jade", "Phoenix", "Dragon", "Lucky", "Orient", "Bright Moon", "Unity", "Prosper",
              "Summit", "Crystal", "Pearl River", "Ocean", "Sky", "Fortune", "Greenfield",
              "Northstar", "Sunway", "Kingdom", "Harmony", "Swift", "Vast", "Trueway", "Apex"]
NOUNS = ["Trading", "Import and Export", "Industrial", "Technology", "Electronics",
         "Garment", "Footwear", "Leather Products", "Cosmetics", "Household Products",
         "Supply Chain", "Logistics", "E-Commerce", "Handicrafts", "Textile", "Hardware",
         "Watch", "Toys", "Sporting Goods", "Digital"]
LEGAL_FORMS = [" Co., Ltd.", " Co.,Ltd", " Co. Ltd", " Company Limited", " Limited", " Ltd",
               " LLC", " Inc.", " Corp.", " GmbH", " PLC", " S.A.", " (HK) Limited",
               " Trading Co., Ltd.", "", " Co., Ltd"]
STORE_WORDS = ["Official Store", "Flagship Store", "Outlet", "Shop", "Boutique", "Mall",
               "Direct", "Deals", "Factory Store", "Express Store", "Fashion House", "Wholesale"]
STORE_BRANDS = ["Luxe", "Vogue", "Trendy", "Urban", "Glam", "Sneaker", "Timepiece", "Beauty",
                "Gadget", "Smart", "Style", "Chic", "Prime", "Mega", "Happy", "Star", "Top",
                "Best", "Wow", "Zen", "Nova", "Aura", "Pixel", "Sole", "Bling"]
PERSON_FIRST = ["Trevor", "Monica", "Dmitri", "Yasmin", "Gareth", "Leticia", "Bogdan",
                "Harriet", "Ignacio", "Keiko", "Mateus", "Nadia", "Oswald", "Rosalind",
                "Stellan", "Tamsin", "Ulrich", "Vesna", "Wendell", "Ximena", "Yusuf", "Zora",
                "Anselm", "Brigid", "Cosmin", "Delphine", "Emeka", "Fenella"]
PERSON_LAST = ["Whitfield", "Okafor", "Lindqvist", "Petrovic", "Achterberg", "Castellanos",
               "Dunmore", "Eriksen", "Fairbanks", "Gallagher", "Holloway", "Iwasaki",
               "Jablonski", "Kowalczyk", "Lombardi", "Mwangi", "Nakashima", "Oyelaran",
               "Pemberton", "Quintero", "Radcliffe", "Sandoval", "Thornbury", "Underhill",
               "Valdivia", "Wojcik", "Yamaguchi", "Zielinski"]
FORWARDER_A = ["Northgate", "Blue Harbor", "Eastline", "Keystone", "Bayside", "Redwood",
               "Liberty", "Pioneer", "Summit Peak", "Westport", "Ironbridge", "Clearwater",
               "Silverline", "Granite", "Harborview", "Lakeshore", "Frontier", "Meridian"]
FORWARDER_B = ["Reship Services", "Parcel Forwarding", "Package Consolidators",
               "Freight Solutions", "Logistics", "Mailbox Center", "Cross Border Services",
               "Fulfillment", "Shipping Hub", "Express Forwarders"]
FORWARDER_FORMS = [" Inc.", " LLC", " Corp.", " Co.", "", " Inc", " L.L.C.", " Company"]
ADDR_STREETS = ["Commerce", "Industrial", "Harbor", "Gateway", "Airport", "Logistics",
                "Warehouse", "Fulton", "Kingsbridge", "Meadowbrook", "Brighton", "Canal",
                "Foundry", "Greenway", "Juniper", "Linden", "Magnolia", "Northfield",
                "Orchard", "Quarry", "Railroad", "Sycamore", "Tidewater", "Willow", "Aspen",
                "Beacon", "Chestnut", "Dogwood", "Exchange", "Freeport"]
ADDR_KINDS = ["Street", "St.", "Avenue", "Ave", "Road", "Rd.", "Drive", "Dr", "Boulevard",
              "Blvd.", "Parkway", "Lane", "Way", "Court", "Place"]
ADDR_UNITS = ["", "", "", "Suite {n}", "Ste. {n}", "Apt. {n}{l}", "Apartment {n}", "Unit {n}",
              "#{n}", "Floor {f}", "Building {f}", "Bldg. {f}, Suite {n}", "PMB {n}"]
US_CITIES = ["Wilmington", "Miami", "Portland", "Jamaica", "Elizabeth", "Carson", "Doral",
             "Newark", "Ontario", "Secaucus", "Kent", "Laredo", "Blaine", "Champlain",
             "Sweetwater", "Hialeah", "Linden", "Compton", "Edison", "Hebron"]
REASONS = {
    "SHIPPER": ["counterfeit goods seizures", "undervaluation", "AD/CVD evasion (EAPA)",
                "misdeclared HTS codes", "transshipment", "prohibited goods",
                "uncertified electronics", "repeated split shipments"],
    "SELLER": ["counterfeit listings", "IPR complaints", "undervaluation on invoices",
               "unapproved cosmetics", "unsafe toys", "split shipments"],
    "CONSIGNEE": ["reshipper for split shipments", "repeated undervaluation",
                  "counterfeit receipts", "drug precursors seizure", "address sharing"],
    "ADDRESS": ["reshipping drop address", "mailbox drop", "address cluster",
                "counterfeit receipts", "controlled substance seizures"],
}


def severity(rng):
    r = rng.random()
    return 1 if r < 0.6 else 2 if r < 0.9 else 3


def listed_on(rng):
    return f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


class Violators:
    def __init__(self, rng, unique):
        self.rng = rng
        self.unique = unique  # number names so that large sets stay mostly distinct
        self.count = 0
        gen_names = {norm_name(s) for s in GEN_STEMS}
        gen_names |= {norm_name(f"{f} {l}") for f in GEN_FIRST for l in GEN_LAST}
        gen_names |= {norm_name(f"{l}, {f}") for f in GEN_FIRST for l in GEN_LAST}
        self.avoid = gen_names

    def tag(self):
        self.count += 1
        return f" {self.count}" if self.unique else ""

    def shipper(self):
        rng = self.rng
        while True:
            if rng.random() < 0.6:
                city, country = rng.choice(CITIES_CN), "CN"
            else:
                city, country = rng.choice(CITIES_OTHER)
            name = f"{city} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}{self.tag()}"
            if norm_name(name) not in self.avoid:
                break
        name += rng.choice(LEGAL_FORMS)
        if rng.random() < 0.1:
            name = name.upper()
        address = f"No. {rng.randint(1, 999)} {rng.choice(['Industrial', 'Jianshe', 'Renmin', 'Zhongshan', 'Binhai', 'Huaqiang'])} Road"
        if rng.random() < 0.3:
            country = ""
        return ("SHIPPER", name, address, country)

    def seller(self):
        rng = self.rng
        name = f"{rng.choice(STORE_BRANDS)}{rng.choice(STORE_BRANDS).lower()} {rng.choice(STORE_WORDS)}{self.tag()}"
        if rng.random() < 0.3:
            name += rng.choice([" Co., Ltd.", " Ltd", " LLC", " Limited"])
        country = rng.choice(["CN", "CN", "CN", "HK", "", "", "VN", "TR", "IN", "US"])
        return ("SELLER", name, "Online", country)

    def consignee(self):
        rng = self.rng
        if rng.random() < 0.4:
            name = f"{rng.choice(FORWARDER_A)} {rng.choice(FORWARDER_B)}{self.tag()}{rng.choice(FORWARDER_FORMS)}"
        else:
            first, last = rng.choice(PERSON_FIRST), rng.choice(PERSON_LAST)
            style = rng.randrange(3)
            name = (f"{first} {last}", f"{first.upper()} {last.upper()}", f"{last}, {first}")[style]
            if self.unique:
                name = f"{first} {chr(65 + rng.randrange(26))}. {last}{self.tag()}"
        return ("CONSIGNEE", name, self.address(), rng.choice(["US", "US", "US", ""]))

    def address(self):
        rng = self.rng
        unit = rng.choice(ADDR_UNITS).format(n=rng.randint(1, 999), l=rng.choice("ABCDEF"),
                                             f=rng.randint(1, 20))
        street = f"{rng.randint(1, 29999)} {rng.choice(ADDR_STREETS)} {rng.choice(ADDR_KINDS)}"
        addr = f"{street}, {unit}" if unit else street
        if rng.random() < 0.15:
            addr += f" {rng.choice(US_CITIES)}"
        if rng.random() < 0.1:
            addr = addr.upper()
        return addr

    def address_row(self):
        return ("ADDRESS", "", self.address() + self.tag(), self.rng.choice(["US", "US", ""]))

    def row(self, kind=None):
        rng = self.rng
        kind = kind or rng.choices(["SHIPPER", "SELLER", "CONSIGNEE", "ADDRESS"],
                                   [35, 25, 20, 20])[0]
        k, name, address, country = {"SHIPPER": self.shipper, "SELLER": self.seller,
                                     "CONSIGNEE": self.consignee,
                                     "ADDRESS": self.address_row}[kind]()
        return (k, name, address, country, severity(rng), rng.choice(REASONS[k]), listed_on(rng))


def violator_rows(rng, total, per_kind, unique):
    v = Violators(rng, unique)
    rows = list(DELIBERATE)
    if total is None:
        for kind in ("SHIPPER", "SELLER", "CONSIGNEE", "ADDRESS"):
            for _ in range(per_kind):
                rows.append(v.row(kind))
    else:
        while len(rows) < total:
            rows.append(v.row())
    return rows


# ----------------------------------------------------------- countries

ISO = ("AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO "
       "BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ "
       "DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP "
       "GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG "
       "KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML "
       "MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE "
       "PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL "
       "SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM "
       "US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW").split()
# HIGH_RISK_ORIGIN points: sanctioned or high-risk origins. Of the generator's
# origins only PK (about 1% of parcels) has points.
COUNTRY_POINTS = {"KP": 700, "IR": 600, "SY": 600, "CU": 400, "RU": 300, "BY": 300, "MM": 200,
                  "VE": 200, "AF": 200, "YE": 150, "LY": 150, "SD": 150, "SS": 150, "SO": 150,
                  "IQ": 100, "PK": 100, "NI": 100}


def country_rows():
    check_unique(ISO, "country")
    return [(c, COUNTRY_POINTS.get(c, 0)) for c in ISO]


# --------------------------------------------------------- large sets

FLAG_NAMES = ["ADCVD", "QUOTA", "EXCISE", "PGA_FDA", "PGA_USDA", "PGA_CPSC", "PGA_FCC", "WATCH"]


def extra_hts_rows(rng, rows, target):
    seen = {r[0] for r in rows}
    chapters = [c for c in range(1, 98) if c != 77]
    while len(rows) < target:
        code = f"{rng.choice(chapters):02d}{rng.randint(1, 99):02d}{rng.randint(0, 99):02d}" \
               f"{rng.randint(0, 99):02d}{rng.randint(0, 99):02d}"
        if code in seen:
            continue
        seen.add(code)
        flags, floor, points = "", "", ""
        if rng.random() < 0.1:
            flags = "|".join(sorted(set(rng.sample(FLAG_NAMES, rng.randint(1, 2))),
                                    key=FLAG_NAMES.index))
            if "WATCH" in flags:
                points = str(rng.choice([100, 150, 200, 250]))
        if rng.random() < 0.2:
            floor = str(rng.randint(100, 50000))
        rows.append((code, f"Synthetic statistical line {code}", flags, floor, points))
    return rows


# -------------------------------------------------------------- output

def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output folder (default: this script's folder)")
    ap.add_argument("--hts-rows", type=int, default=None,
                    help="total HTS rows: the example rows plus synthetic 10-digit lines")
    ap.add_argument("--violators", type=int, default=None,
                    help="total violator rows (synthetic names numbered to stay distinct)")
    ap.add_argument("--per-kind", type=int, default=250,
                    help="violators of each kind in the example set (default 250)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)

    hts = hts_rows()
    if args.hts_rows:
        hts = extra_hts_rows(rng, hts, args.hts_rows)
    vio = violator_rows(rng, args.violators, args.per_kind, unique=args.violators is not None)
    cty = country_rows()
    write_csv(os.path.join(args.out, "hts.csv"),
              ["hts", "description", "flags", "unit_value_floor_cents", "points"], hts)
    write_csv(os.path.join(args.out, "violators.csv"),
              ["kind", "name", "address", "country", "severity", "reason", "listed_on"], vio)
    write_csv(os.path.join(args.out, "countries.csv"), ["country", "points"], cty)
    print(f"make_refdata: {len(hts)} hts rows, {len(vio)} violator rows, {len(cty)} countries "
          f"in {args.out}")


if __name__ == "__main__":
    main()
