"""A short human sentence per feature, in English and French: what a reason code means, for the
console (wherever reasons appear) and for the in-chat warnings (``warning_text``).

Most features are one measure of one entity over one window (``sender_count_1h``): their sentence
is built from the three parts (``_MEASURES``, ``_ENTITIES``, ``_WINDOWS``); the others are written
out whole (``_WHOLE``). ``describe`` raises KeyError for a name it cannot explain, and
tests/features/test_glossary.py checks every name the models use has both sentences.

>>> describe("sender_count_1h")
'Number of transfers sent by the sender in the last hour.'
>>> describe("recipient_account_age_days", "fr")
'Âge du compte du bénéficiaire, en jours.'
"""
from __future__ import annotations

import re

LANGS = ("en", "fr")

# entity -> (en: subject, en: possessive), (fr: subject, fr: "de" + subject)
_ENTITIES = {
    "sender": (("the sender", "the sender's"), ("l'émetteur", "de l'émetteur")),
    "recipient": (("the recipient", "the recipient's"), ("le bénéficiaire", "du bénéficiaire")),
    "device": (("this device", "this device's"), ("cet appareil", "de cet appareil")),
    "card": (("this card", "this card's"), ("cette carte", "de cette carte")),
    "ip": (("this IP address", "this IP address's"), ("cette adresse IP", "de cette adresse IP")),
}
_WINDOWS = {
    "10m": ("in the last 10 minutes", "dans les 10 dernières minutes"),
    "1h": ("in the last hour", "dans la dernière heure"),
    "24h": ("in the last 24 hours", "dans les dernières 24 heures"),
    "7d": ("in the last 7 days", "dans les 7 derniers jours"),
    "30d": ("in the last 30 days", "dans les 30 derniers jours"),
}
_EVENTS = {  # hours_since_<event>
    "password_reset": ("reset the password", "a réinitialisé son mot de passe"),
    "email_change": ("changed the email address", "a changé d'adresse e-mail"),
    "phone_change": ("changed the phone number", "a changé de numéro de téléphone"),
    "new_device": ("signed in from a new device", "s'est connecté depuis un nouvel appareil"),
    "new_card": ("added a new card", "a ajouté une nouvelle carte"),
    "new_bank_account": ("added a new bank account", "a ajouté un nouveau compte bancaire"),
    "new_country": ("was seen in a new country", "a été vu dans un nouveau pays"),
}
# measure -> (en, fr) templates: {e} the entity, {of} its possessive / "de" form, {w} the window,
# {flow} "sent by"/"received by" + the entity (received for the recipient)
_MEASURES = {
    "count": ("Number of transfers {flow} {w}.", "Nombre de virements {flow} {w}."),
    "sum": ("Total amount of the transfers {flow} {w}.", "Montant total des virements {flow} {w}."),
    "max": ("Largest amount among the transfers {flow} {w}.",
            "Plus gros montant parmi les virements {flow} {w}."),
    "distinct_recipients": ("Number of different recipients paid through {e} {w}.",
                            "Nombre de bénéficiaires différents payés via {e} {w}."),
    "distinct_senders": ("Number of different senders who paid {e} {w}.",
                         "Nombre d'émetteurs différents ayant payé {e} {w}."),
    "accounts": ("Number of accounts that used {e} {w}.", "Nombre de comptes ayant utilisé {e} {w}."),
    "failed_logins": ("Failed sign-ins on {e} {w}.", "Connexions échouées sur {e} {w}."),
    "amount_to_median": ("This transfer's amount divided by the median of {of} amounts {w}.",
                         "Montant de ce virement divisé par la médiane des montants {of} {w}."),
    "amount_zscore": ("How far this amount is from {of} usual amounts {w} (z-score).",
                      "Écart de ce montant aux montants habituels {of} {w} (z-score)."),
    "amount_history": ("Number of past amounts of {e} {w} the comparison rests on.",
                       "Nombre de montants passés {of} {w} sur lesquels repose la comparaison."),
    "account_age_days": ("Age of {of} account, in days.", "Âge du compte {of}, en jours."),
    "confirmed_fraud": ("{E} has a confirmed fraud on record.",
                        "{E} a une fraude confirmée à son dossier."),
    "fraud_links": ("Links (a shared device, card or payments) between {e} and accounts with "
                    "fraud {w}.",
                    "Liens (appareil, carte ou paiements partagés) entre {e} et des comptes "
                    "frauduleux {w}."),
    "scam_reports": ("Scam reports against {e} {w}.", "Signalements d'arnaque contre {e} {w}."),
    "in_count": ("Number of transfers received by {e} {w} (the base of the fraud share).",
                 "Nombre de virements reçus par {e} {w} (la base de la part de fraude)."),
    "in_fraud": ("Transfers received by {e} {w} that were fraud.",
                 "Virements reçus par {e} {w} qui étaient frauduleux."),
    "in_fraud_share": ("Share of the transfers received by {e} {w} that were fraud.",
                       "Part des virements reçus par {e} {w} qui étaient frauduleux."),
    "in_hours_since_fraud": ("Hours since {e} last received a fraudulent transfer.",
                             "Heures depuis le dernier virement frauduleux reçu par {e}."),
    "out_count": ("Number of transfers sent by {e} {w} (the base of the fraud share).",
                  "Nombre de virements envoyés par {e} {w} (la base de la part de fraude)."),
    "out_fraud": ("Transfers sent by {e} {w} that were fraud.",
                  "Virements envoyés par {e} {w} qui étaient frauduleux."),
    "out_fraud_share": ("Share of the transfers sent by {e} {w} that were fraud.",
                        "Part des virements envoyés par {e} {w} qui étaient frauduleux."),
    "out_hours_since_fraud": ("Hours since {e} last sent a fraudulent transfer.",
                              "Heures depuis le dernier virement frauduleux envoyé par {e}."),
    "out_mean": ("Average amount sent by {e} {w}.", "Montant moyen envoyé par {e} {w}."),
    "out_sum": ("Total amount sent by {e} {w}.", "Montant total envoyé par {e} {w}."),
    "out_max": ("Largest amount sent by {e} {w}.", "Plus gros montant envoyé par {e} {w}."),
}
_PATTERN = re.compile(r"^(sender|recipient|device|card|ip)_(.+?)(?:_(10m|1h|24h|7d|30d))?$")

_WHOLE = {
    "transfer_amount_cents": ("The transfer's amount.", "Le montant du virement."),
    "transfer_suggested": ("The assistant suggested this transfer in the chat.",
                           "L'assistant a suggéré ce virement dans la conversation."),
    "transfer_amount_edited": ("The sender changed the suggested amount.",
                               "L'émetteur a modifié le montant suggéré."),
    "transfer_recipient_edited": ("The sender changed the suggested recipient.",
                                  "L'émetteur a modifié le bénéficiaire suggéré."),
    "transfer_has_conversation": ("The transfer was made from a conversation.",
                                  "Le virement a été fait depuis une conversation."),
    "transfer_has_device": ("The transfer names the device it was made from.",
                            "Le virement indique l'appareil d'où il a été fait."),
    "transfer_has_card": ("The transfer is paid with a card.", "Le virement est payé par carte."),
    "transfer_payout_delay_hours": ("Hours between the request and the payout.",
                                    "Heures entre la demande et le versement."),
    "transfer_to_self": ("The sender pays an account of their own.",
                         "L'émetteur paie un de ses propres comptes."),
    "sender_pair_age_hours": ("Hours since the sender and the recipient first talked.",
                              "Heures depuis le premier échange entre l'émetteur et le bénéficiaire."),
    "sender_pair_msgs_out_7d": ("Messages from the sender to the recipient in the last 7 days.",
                                "Messages de l'émetteur au bénéficiaire dans les 7 derniers jours."),
    "sender_pair_msgs_in_7d": ("Messages from the recipient to the sender in the last 7 days.",
                               "Messages du bénéficiaire à l'émetteur dans les 7 derniers jours."),
    "sender_pair_payee_raised_money_first": (
        "The recipient was the first to talk about money.",
        "Le bénéficiaire a parlé d'argent le premier."),
    "sender_pair_money_msgs_1h": ("Messages about money between them in the last hour.",
                                  "Messages parlant d'argent entre eux dans la dernière heure."),
    "sender_pair_money_requests_in_1h": (
        "Requests for money from the recipient in the last hour.",
        "Demandes d'argent du bénéficiaire dans la dernière heure."),
    "sender_pair_urgent_msgs_1h": ("Urgent-sounding messages from the recipient in the last hour.",
                                   "Messages pressants du bénéficiaire dans la dernière heure."),
    "sender_pair_link_msgs_1h": ("Messages with a link from the recipient in the last hour.",
                                 "Messages contenant un lien du bénéficiaire dans la dernière heure."),
    "sender_pair_prior_transfers_out": ("Earlier transfers from the sender to this recipient.",
                                        "Virements antérieurs de l'émetteur à ce bénéficiaire."),
    "sender_pair_prior_transfers_in": ("Earlier transfers from this recipient to the sender.",
                                       "Virements antérieurs de ce bénéficiaire à l'émetteur."),
    "sender_no_prior_conversation": ("The sender never talked with the recipient before.",
                                     "L'émetteur n'a jamais échangé avec le bénéficiaire avant."),
    "sender_first_transfer_to_recipient": ("The sender's first transfer to this recipient.",
                                           "Premier virement de l'émetteur à ce bénéficiaire."),
    "sender_suggestion_seen": ("The sender saw a transfer suggestion from the assistant.",
                               "L'émetteur a vu une suggestion de virement de l'assistant."),
    "sender_suggestion_for_other_payee": (
        "The assistant's suggestion was for another recipient.",
        "La suggestion de l'assistant visait un autre bénéficiaire."),
    "sender_suggestion_edited": ("The sender edited the assistant's suggestion.",
                                 "L'émetteur a modifié la suggestion de l'assistant."),
    "sender_device_first_seen": ("The first time this device is seen on the sender's account.",
                                 "Première fois que cet appareil est vu sur le compte de l'émetteur."),
    "sender_minutes_since_last_inbound": ("Minutes since the sender last received money.",
                                          "Minutes depuis le dernier argent reçu par l'émetteur."),
    "sender_money_requests_out_1h": ("Requests for money the sender made in the last hour.",
                                     "Demandes d'argent faites par l'émetteur dans la dernière heure."),
    "sender_new_recipients_24h": ("New recipients the sender paid in the last 24 hours.",
                                  "Nouveaux bénéficiaires payés par l'émetteur dans les dernières 24 heures."),
    "recipient_new_senders_share_24h": (
        "Share of the recipient's senders in the last 24 hours who never paid it before.",
        "Part des émetteurs des dernières 24 heures qui n'avaient jamais payé ce bénéficiaire."),
    "recipient_forwarded_share_30m_7d": (
        "Share of the money the recipient received in the last 7 days that it sent on within "
        "30 minutes (a money mule's pattern).",
        "Part de l'argent reçu par le bénéficiaire en 7 jours qu'il a renvoyé en moins de "
        "30 minutes (le schéma d'une mule)."),
    "recipient_min_forward_minutes_7d": (
        "Shortest time, in minutes, the recipient took to send money on in the last 7 days.",
        "Plus court délai, en minutes, entre réception et renvoi d'argent par le bénéficiaire "
        "en 7 jours."),
}


def _from_parts(name: str) -> tuple[str, str]:
    match = _PATTERN.match(name)
    if not match:
        raise KeyError(name)
    entity, measure, window = match.groups()
    if measure.startswith("hours_since_") and measure[12:] in _EVENTS:
        (e, _), (fe, _) = _ENTITIES[entity]
        en, fr = _EVENTS[measure[12:]]
        return f"Hours since {e} {en}.", f"Heures depuis que {fe} {fr}."
    if measure not in _MEASURES:
        raise KeyError(name)
    out = []
    for lang, template in zip(LANGS, _MEASURES[measure]):
        i = LANGS.index(lang)
        subject, of = _ENTITIES[entity][i]
        received = entity == "recipient"
        flow = (("received by " if received else "sent by ") if lang == "en"
                else ("reçus par " if received else "envoyés par ")) + subject
        if lang == "en" and entity in ("device", "card", "ip"):
            flow = f"made with {subject}"
        elif entity in ("device", "card", "ip"):
            flow = f"faits avec {subject}"
        text = template.format(e=subject, E=subject[0].upper() + subject[1:], of=of, flow=flow,
                               w=_WINDOWS[window][i] if window else "")
        out.append(re.sub(r" +([.,])", r"\1", text))
    return out[0], out[1]


def describe(name: str, lang: str = "en") -> str:
    """The feature's sentence in ``lang`` ("en" or "fr"); KeyError if it has none."""
    pair = _WHOLE.get(name) or _from_parts(name)
    return pair[LANGS.index(lang)]


def describe_or_name(name: str, lang: str = "en") -> str:
    """For display: the sentence, or the raw name for a feature the glossary does not know."""
    try:
        return describe(name, lang)
    except (KeyError, ValueError):
        return name


# --- the in-chat warnings (``features.vector.WARNING_CODES``; decide.warning_code's default) ----
WARNINGS = {
    "credentials_changed": (
        "Your account's sign-in details changed recently. If that was not you, stop: do not send.",
        "Les identifiants de votre compte ont changé récemment. Si ce n'est pas vous, arrêtez : "
        "n'envoyez rien."),
    "first_contact_payee": (
        "You have never paid this person before and only just started talking. Scammers move "
        "fast: check who they are another way first.",
        "Vous n'avez jamais payé cette personne et vous venez de faire connaissance. Les escrocs "
        "vont vite : vérifiez son identité par un autre moyen."),
    "link_shared": (
        "This person sent you a link. Never pay or sign in through a link from a chat.",
        "Cette personne vous a envoyé un lien. Ne payez et ne vous connectez jamais via un lien "
        "reçu par message."),
    "money_request": (
        "This person asked you for money. If they claim to be someone you know, call that "
        "person on the number you already have.",
        "Cette personne vous a demandé de l'argent. Si elle se présente comme un proche, "
        "appelez ce proche au numéro que vous connaissez."),
    "new_card": (
        "This card was added to your account recently. If you did not add it, do not send.",
        "Cette carte a été ajoutée récemment à votre compte. Si ce n'est pas vous, n'envoyez rien."),
    "new_device": (
        "This payment comes from a device new to your account. If it is not yours, do not send.",
        "Ce paiement vient d'un appareil nouveau sur votre compte. S'il n'est pas à vous, "
        "n'envoyez rien."),
    "payee_reported": (
        "Other people reported this recipient for scams. We advise you not to send.",
        "D'autres personnes ont signalé ce bénéficiaire pour arnaque. Nous vous conseillons de "
        "ne pas envoyer."),
    "unusual_amount": (
        "This amount is much larger than you usually send. Take a moment before confirming.",
        "Ce montant est bien plus élevé que d'habitude. Prenez un moment avant de confirmer."),
    "urgency": (
        "You are being hurried. Real emergencies can wait the minute it takes to check.",
        "On vous presse. Une vraie urgence peut attendre la minute qu'il faut pour vérifier."),
    "unusual_transfer": (
        "This transfer looks unusual. Take a moment to check who you are paying.",
        "Ce virement semble inhabituel. Prenez un moment pour vérifier qui vous payez."),
}


def warning_text(code: str, lang: str = "en") -> str:
    """The in-chat warning's text for a warning code (``decide.warning_code``), in ``lang``;
    an unknown code gets the general one."""
    return WARNINGS.get(code, WARNINGS["unusual_transfer"])[LANGS.index(lang)]
