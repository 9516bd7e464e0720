"""What people type, in French and English, by intent: a finite set of templates x a grid of
amounts and names, with amounts written as people write them (``23€``, ``12,50 €``, ``€40``).

Why finite, and how the signals are checked: docs/simulator.md#texts
"""
from __future__ import annotations

import random
from typing import Optional

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    # --- everyday conversation -------------------------------------------------------------
    "greet": {
        "fr": ("Salut {name}, ça va ?", "Coucou {name} !", "Hello {name}, tu fais quoi ce soir ?",
               "Bonjour {name}, tu es dispo demain ?"),
        "en": ("Hi {name}, how are you?", "Hey {name}!", "Hello {name}, are you free tomorrow?",
               "Hi {name}, what are you up to?"),
    },
    "chat": {
        "fr": ("Oui ça va et toi ?", "Trop bien, merci !", "Je suis au boulot, je te rappelle",
               "On se voit demain ?", "Ok ça marche", "Haha oui je vois", "Tu as vu le match ?",
               "Je serai un peu en retard", "Bonne nuit !", "D'accord, à plus tard",
               "Je pense que oui", "C'est pas faux", "Tu peux prendre le pain en passant ?",
               "Le train est en retard encore", "Super idée !", "Bon week-end !"),
        "en": ("I'm good thanks, you?", "That's great!", "I'm at work, call you later",
               "See you tomorrow?", "Sounds good", "Haha yes I know", "Did you see the match?",
               "I'll be a bit late", "Good night!", "Ok, talk to you later", "I think so",
               "Can you grab some bread on the way?", "The train is late again", "Great idea!",
               "Have a nice weekend!", "Yes, that works for me"),
    },
    "plans": {  # money words without a payment: the assistant may suggest, nobody pays
        "fr": ("On se fait un resto samedi ?", "Je fais les courses ce soir, tu as besoin de quelque chose ?",
               "Faut qu'on parle du cadeau pour Marie", "Le loyer a encore augmenté..."),
        "en": ("Shall we go to a restaurant on Saturday?", "I'm doing the groceries tonight, need anything?",
               "We need to talk about the gift for Sam", "The rent went up again..."),
    },
    # --- legitimate money talk -----------------------------------------------------------
    "split": {  # the one who paid, to the one who owes
        "fr": ("Le resto d'hier: {amount} chacun", "Tu me dois {amount} pour les courses",
               "Pour le ciné et le dîner ça fait {amount} pour toi", "Les places de concert: {amount} par personne",
               "Je t'ai avancé {amount} pour le taxi"),
        "en": ("Dinner last night was {amount} each", "You owe me {amount} for the groceries",
               "Cinema and dinner come to {amount} for you", "Concert tickets are {amount} per person",
               "I paid {amount} for the taxi, your share"),
    },
    "rent": {
        "fr": ("Salut ! Ta part du loyer ce mois-ci: {amount}", "Loyer + charges de novembre: {amount} pour toi"),
        "en": ("Hi! Your share of the rent this month is {amount}", "Rent and bills for November: {amount} for you"),
    },
    "ask_amount": {  # the one who owes asks how much
        "fr": ("Je te dois combien pour hier ?", "Combien je te dois pour les courses ?"),
        "en": ("How much do I owe you for yesterday?", "What do I owe you for the groceries?"),
    },
    "lend": {  # a friend asks to borrow: a legitimate money request
        "fr": ("Tu peux me prêter {amount} jusqu'à vendredi ?", "Peux-tu me prêter {amount} ? je te rends ça lundi"),
        "en": ("Could you lend me {amount} until Friday?", "Can you lend me {amount}? I'll pay you back on Monday"),
    },
    "repay": {  # the one who owes, paying back
        "fr": ("Je te rembourse les {amount} de la semaine dernière", "Voilà pour le prêt, {amount}, merci encore"),
        "en": ("Paying you back the {amount} from last week", "Here's the {amount} you lent me, thanks again"),
    },
    "gift": {
        "fr": ("Joyeux anniversaire {name} ! Petit cadeau: {amount}", "Pour la cagnotte de Léa je mets {amount}"),
        "en": ("Happy birthday {name}! A little gift: {amount}", "For Sam's leaving gift I'm putting in {amount}"),
    },
    "will_pay": {
        "fr": ("Ok je t'envoie ça", "Ça marche, je te fais le virement", "Pas de souci, c'est parti"),
        "en": ("Ok I'll send it", "Sure, doing the transfer now", "No problem, on its way"),
    },
    "short_of_cash": {  # a friend in a real hurry: a legitimate urgent money request
        "fr": ("Tu peux m'envoyer {amount} vite ? j'ai oublié ma carte au resto",
               "Urgent: peux-tu me virer {amount} maintenant pour le taxi ? je te rends ce soir"),
        "en": ("Can you send me {amount} right now? I forgot my wallet at the bar",
               "Please hurry, can you send me {amount} for the taxi? I'll pay you back tonight"),
    },
    "sell": {  # an honest seller answering a buyer, often with a link to the listing
        "fr": ("Oui il est toujours dispo, {amount}. Les photos: www.leboncoin.fr/ad/{code}",
               "Toujours à vendre, {amount}, je peux le poster demain",
               "Oui, {amount} et il est à vous. Annonce: www.vinted.fr/items/{code}"),
        "en": ("Yes it's still available, {amount}. Photos: www.gumtree.com/p/{code}",
               "Still for sale, {amount}, I can post it tomorrow",
               "Yes, {amount} and it's yours. Listing: www.vinted.co.uk/items/{code}"),
    },
    "seller_pay": {  # the honest seller asks to be paid in the app
        "fr": ("Envoie-moi {amount} ici et je poste le colis demain matin",
               "Vous pouvez me payer {amount} par l'appli, je vous envoie le suivi"),
        "en": ("Send me {amount} here and I'll post it tomorrow morning",
               "You can pay the {amount} through the app, I'll send you the tracking"),
    },
    "deposit": {  # a landlord or a seller of something big: a large first payment, in a hurry
        "fr": ("Bonjour, pour la caution de l'appartement: {amount}, à régler aujourd'hui même svp",
               "Bonjour, l'acompte pour la voiture est de {amount}. Mon numéro: 06 45 12 78 90"),
        "en": ("Hello, the deposit for the flat is {amount}, please pay it before tonight",
               "Hi, the down payment for the car is {amount}. My number: +33 6 45 12 78 90"),
    },
    "kitty": {  # someone collects everyone's share, and pays the total on
        "fr": ("Pour le cadeau de {name}: {amount} par personne, je m'occupe de commander",
               "Le gîte pour le week-end: {amount} chacun, je fais le virement au proprio"),
        "en": ("For {name}'s present: {amount} each, I'll order it",
               "The cottage for the weekend is {amount} each, I'll pay the owner"),
    },
    "thanks": {
        "fr": ("Merci, bien reçu !", "Reçu, merci !", "Top, merci"),
        "en": ("Thanks, got it!", "Received, thank you!", "Perfect, thanks"),
    },
    # --- fraud -----------------------------------------------------------------------------
    "need": {  # "friend in need", sent from a taken-over account to its contacts
        "fr": ("{name}, j'ai un gros problème, j'ai besoin de {amount} tout de suite, je te rembourse demain",
               "C'est urgent, peux-tu me virer {amount} maintenant ? ma carte est bloquée",
               "Envoie-moi {amount} vite stp, je suis coincé à l'étranger, je t'explique après"),
        "en": ("{name}, I'm in trouble, can you send me {amount} right now? I'll pay you back tomorrow",
               "Urgent: I need {amount} asap, my card is blocked",
               "Please hurry, send me {amount}, I'm stuck abroad, will explain later"),
    },
    "flirt": {
        "fr": ("Tu me manques tellement", "J'ai hâte de te rencontrer enfin", "Tu es la plus belle chose qui me soit arrivée",
               "Je pense à toi tout le temps", "Bonjour mon cœur, bien dormi ?"),
        "en": ("I miss you so much", "I can't wait to finally meet you", "You are the best thing that ever happened to me",
               "I think about you all the time", "Good morning my love, did you sleep well?"),
    },
    "romance_ask": {
        "fr": ("Mon amour, je suis bloqué à l'aéroport, j'ai besoin de {amount} pour le visa, c'est urgent",
               "Peux-tu m'aider ? j'ai besoin de {amount} pour l'hôpital aujourd'hui même"),
        "en": ("My love, I'm stuck at the airport and I need {amount} for the visa, it's urgent",
               "Can you help me? I need {amount} for the hospital bill, please hurry"),
    },
    "listing": {
        "fr": ("Bonjour, le vélo est toujours dispo à {amount}. Photos: www.bonplan-annonces.fr/v/{code}",
               "Oui l'iPhone est encore à vendre, {amount}, voir www.occaz-rapide.com/{code}"),
        "en": ("Hi, the bike is still available for {amount}. Photos: www.quick-deals.co/item{code}",
               "Yes the iPhone is still for sale, {amount}, see www.fast-market.io/{code}"),
    },
    "listing_pay": {
        "fr": ("Envoyez {amount} maintenant pour le réserver, sinon je le vends à quelqu'un d'autre. Appelez-moi au 06 12 34 56 78",
               "Il faut payer {amount} tout de suite, j'ai d'autres acheteurs. Mon numéro: 07 81 22 45 90"),
        "en": ("Send {amount} now to reserve it, otherwise it goes to someone else. Call me on +33 6 12 34 56 78",
               "You need to pay {amount} right now, I have other buyers. My number: +33 7 81 22 45 90"),
    },
    "buyer": {
        "fr": ("Bonjour, l'annonce est toujours disponible ?", "Bonjour, je suis intéressé par votre annonce"),
        "en": ("Hi, is the listing still available?", "Hello, I'm interested in your ad"),
    },
    "impersonate": {
        "fr": ("Maman c'est moi, j'ai changé de numéro. Je t'explique, mon téléphone est cassé",
               "Bonjour, service sécurité de votre banque. Une opération suspecte a été détectée, appelez le 01 84 88 12 34",
               "Votre colis est bloqué en douane, régularisez sur www.colis-suivi.com/{code}"),
        "en": ("Hi mum, it's me, this is my new number. My phone broke, I'll explain",
               "Hello, this is your bank's fraud team. A suspicious payment was detected, call +33 1 84 88 12 34",
               "Your parcel is held at customs, settle it at www.parcel-track.co/{code}"),
    },
    "impersonate_ask": {
        "fr": ("J'ai besoin de {amount} tout de suite pour payer une facture, peux-tu me virer ça maintenant ?",
               "Pour sécuriser votre compte, envoyez {amount} maintenant sur le compte de sécurité, c'est urgent",
               "Frais de douane: {amount} à payer aujourd'hui même"),
        "en": ("I need {amount} right now to pay a bill, can you send it immediately?",
               "To secure your account, send {amount} now to the safe account, it's urgent",
               "Customs fee: {amount} to pay before tonight"),
    },
    "victim_ok": {
        "fr": ("D'accord, je fais le virement", "Ok, je t'envoie ça", "Pas de problème, c'est fait"),
        "en": ("Ok, I'm doing the transfer", "Alright, sending it", "No problem, done"),
    },
    "spam": {
        "fr": ("Gagnez 500€ en une heure ! Inscription sur www.gain-facile.fr/{code}",
               "Vous avez gagné un iPhone, réclamez-le vite sur www.cadeau-gagnant.fr/{code}"),
        "en": ("Earn €500 in one hour! Sign up at www.easy-win.io/{code}",
               "You won an iPhone, claim it now at www.prize-claim.co/{code}"),
    },
    "done": {
        "fr": ("c'est fait", "envoyé", "ok reçu"),
        "en": ("done", "sent", "ok got it"),
    },
}
CODES = tuple(f"{n:04x}" for n in range(40, 72))  # a small set of link codes: texts stay finite


def format_amount(cents: int, lang: str, rng: random.Random) -> str:
    euros, rest = divmod(cents, 100)
    if lang == "fr":
        return f"{euros},{rest:02d} €" if rest else rng.choice((f"{euros}€", f"{euros} €", f"{euros} euros"))
    return f"€{euros}.{rest:02d}" if rest else rng.choice((f"€{euros}", f"{euros} euros"))


def render(rng: random.Random, intent: str, lang: str, amount_cents: Optional[int] = None,
           name: str = "") -> str:
    # rng.random() indexing rather than rng.choice: this runs for every message
    templates = TEMPLATES[intent][lang]
    template = templates[int(rng.random() * len(templates))]
    amount = format_amount(amount_cents, lang, rng) if amount_cents is not None else ""
    return template.format(amount=amount, name=name, code=CODES[int(rng.random() * len(CODES))])
