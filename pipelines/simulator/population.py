"""The simulated population: users, their devices, cards and bank accounts, and who talks
to whom (communities sharing a language and a country, a few links across).

Raw identifiers look like what the services receive from the apps (``user-000123``, Luhn-valid
cards, French IBANs...); they never leave the simulator unhashed.

>>> luhn_complete("497010123456789")
'4970101234567893'

Why: docs/simulator.md#population
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

FIRST_NAMES = {
    "fr": ["Camille", "Léa", "Manon", "Chloé", "Inès", "Sarah", "Julie", "Emma", "Lucas", "Hugo",
           "Louis", "Nathan", "Théo", "Jules", "Karim", "Yanis", "Mehdi", "Antoine", "Thomas",
           "Pauline", "Claire", "Nicolas", "Sophie", "Amine"],
    "en": ["Olivia", "Amelia", "Isla", "Ava", "Emily", "Sophie", "Grace", "Oliver", "George",
           "Harry", "Jack", "Noah", "Leo", "Arthur", "James", "Priya", "Tom", "Ella", "Ryan",
           "Chloe"],
}
HOME_COUNTRIES = {"fr": (("FR", 0.86), ("BE", 0.08), ("CH", 0.04), ("LU", 0.02)),
                  "en": (("GB", 0.6), ("IE", 0.2), ("FR", 0.15), ("US", 0.05))}
TRAVEL_COUNTRIES = ("ES", "IT", "PT", "DE", "GB", "FR", "NL", "US", "MA")
FRAUD_COUNTRIES = ("NG", "CI", "RU", "BR", "RO", "UA", "VN", "FR", "FR", "GB")
CARD_BINS = ("497010", "497355", "453201", "535522", "516732", "492980")


@dataclass(slots=True, eq=False)
class User:
    idx: int
    id: str  # raw account id, e.g. "user-000123"
    name: str
    lang: str  # "fr" | "en"
    country: str
    devices: list[str]
    ip: str
    card: Optional[str]  # registered funding card number, raw
    iban: Optional[str]  # bank account the payouts go to, raw
    assistant: bool  # wants the payment assistant on
    activity: float  # legitimate episodes started per day, on average
    friends: list[int] = field(default_factory=list)
    role: str = "member"  # member | sleeper | scammer | mule | fraudster | farm
    # Mutable state that scripts (and, live, the owners of simulator/owners.py) read and write.
    onboarded: bool = False  # its registrations and assistant switch have been sent
    compromised_from_ts: Optional[int] = None  # set by an account takeover, while it lasts
    taken_over_ts: Optional[int] = None  # the last takeover's start: the owner knows it was not them

    @property
    def device(self) -> str:
        return self.devices[0]


def new_device(rng: random.Random) -> str:
    return f"dev-{rng.getrandbits(48):012x}"


def new_ip(rng: random.Random, private: bool = True) -> str:
    first = 10 if private else rng.choice((41, 77, 89, 102, 185, 197))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def luhn_complete(digits: str) -> str:
    """Append the Luhn check digit, so card numbers look like card numbers."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


def new_card(rng: random.Random) -> str:
    return luhn_complete(rng.choice(CARD_BINS) + "".join(str(rng.randrange(10)) for _ in range(9)))


def new_iban(rng: random.Random) -> str:
    """A French IBAN with valid ISO 13616 check digits."""
    bban = f"{rng.randrange(10**5):05d}{rng.randrange(10**5):05d}{rng.randrange(10**11):011d}" \
           f"{rng.randrange(100):02d}"
    check = 98 - int(bban + "152700") % 97  # "FR00" moved to the end, letters as numbers
    return f"FR{check:02d}{bban}"


def _weighted(rng: random.Random, pairs) -> str:
    values, weights = zip(*pairs)
    return rng.choices(values, weights)[0]


class Population:
    def __init__(self, rng: random.Random, size: int):
        self.rng = rng
        self.users: list[User] = []
        self._build(size)

    def _build(self, size: int) -> None:
        rng = self.rng
        communities: list[range] = []
        while len(self.users) < size:
            lang = "fr" if rng.random() < 0.7 else "en"
            country = _weighted(rng, HOME_COUNTRIES[lang])
            start = len(self.users)
            for _ in range(min(rng.randint(6, 30), size - start)):
                self.add("member", lang=lang, country=country)
            communities.append(range(start, len(self.users)))
        adjacency: list[set[int]] = [set() for _ in self.users]
        for members in communities:
            for i in members:
                if len(members) > 1:
                    k = min(len(members) - 1, rng.randint(2, 10))
                    for j in rng.sample(members, k + 1):  # k friends, once self is skipped
                        if j != i:
                            adjacency[i].add(j)
                            adjacency[j].add(i)
                for _ in range(rng.randint(0, 2)):  # weak ties across communities
                    j = rng.randrange(size)
                    if j != i:
                        adjacency[i].add(j)
                        adjacency[j].add(i)
        for user, friends in zip(self.users, adjacency):
            user.friends = sorted(friends)  # sorted: no dependence on set order

    def add(self, role: str, lang: Optional[str] = None, country: Optional[str] = None,
            device: Optional[str] = None, ip: Optional[str] = None, disguised: bool = False) -> User:
        """A new account: a member of the population, or a fraudster's, mule's or farm's.
        ``disguised``: a fraud account made up as a member's (a home country, sometimes a
        second device, a card, the assistant), with no everyday activity of its own."""
        rng = self.rng
        idx = len(self.users)
        lang = lang or ("fr" if rng.random() < 0.7 else "en")
        member = role == "member" or disguised
        user = User(
            idx=idx, id=f"user-{idx:06d}", name=rng.choice(FIRST_NAMES[lang]), lang=lang,
            country=country or (_weighted(rng, HOME_COUNTRIES[lang]) if member
                                else rng.choice(FRAUD_COUNTRIES)),
            devices=[device or new_device(rng)] + ([new_device(rng)] if member and rng.random() < 0.2 else []),
            ip=ip or new_ip(rng),
            card=new_card(rng) if member and rng.random() < 0.6 else None,
            iban=new_iban(rng) if not member or rng.random() < 0.9 else None,
            assistant=member and rng.random() < 0.55,
            activity=rng.lognormvariate(0.0, 0.6) if role == "member" else 0.0,
            role=role,
        )
        self.users.append(user)
        return user

    def __getitem__(self, idx: int) -> User:
        return self.users[idx]

    def by_id(self, user_id: str) -> Optional[User]:
        """The user with raw id ``user_id`` (``user-<idx>``, as ``add`` makes them)."""
        idx = user_id.removeprefix("user-")
        return self.users[int(idx)] if idx.isdigit() and int(idx) < len(self.users) else None

    def __len__(self) -> int:
        return len(self.users)

    def members(self) -> list[User]:
        return [u for u in self.users if u.role == "member"]

    @staticmethod
    def conversation(a: User, b: User) -> str:
        """One conversation per pair of users, whoever writes first."""
        lo, hi = (a.idx, b.idx) if a.idx < b.idx else (b.idx, a.idx)
        return f"conv-{lo:06d}-{hi:06d}"
