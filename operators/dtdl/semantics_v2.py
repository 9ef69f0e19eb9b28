"""DTDL v2's built-in semantic types and their units (v3 moved them to QuantitativeTypes).

In a v2 model a Telemetry or Property co-typed with a semantic type has a numeric schema and a
required ``unit`` from the same row of v2's table; both may be written as terms or as
``dtmi:standard:class:<Type>;2`` and ``dtmi:standard:unit:<unit>;2``. The table below
follows the DTDL v2 language specification (it is smaller than QuantitativeTypes').
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_ANGLE = "degreeOfArc minuteOfArc radian secondOfArc turn"
_LENGTH = (
    "astronomicalUnit centimetre foot inch kilometre metre micrometre mile millimetre nanometre "
    "nauticalMile"
)
_POWER = "gigawatt horsepower kilowatt kilowattHourPerYear megawatt microwatt milliwatt watt"
_FORCE = "newton ounce pound ton"
_DENSITY = "gramPerCubicMetre kilogramPerCubicMetre"
_BINARY = ["exbi", "gibi", "kibi", "mebi", "tebi", "yobi", "zebi"]

#: Semantic type -> the units it admits.
UNITS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        name: frozenset(units.split())
        for name, units in {
            "Acceleration": "centimetrePerSecondSquared gForce metrePerSecondSquared",
            "Angle": _ANGLE,
            "AngularAcceleration": "radianPerSecondSquared",
            "AngularVelocity": (
                "degreePerSecond radianPerSecond revolutionPerMinute revolutionPerSecond"
            ),
            "Area": (
                "acre hectare squareCentimetre squareFoot squareInch squareKilometre squareMetre "
                "squareMillimetre"
            ),
            "Capacitance": "farad microfarad millifarad nanofarad picofarad",
            "Current": "ampere microampere milliampere",
            "DataRate": " ".join(
                ["bitPerSecond", "bytePerSecond"]
                + [f"{p}{u}PerSecond" for p in _BINARY for u in ("bit", "byte")]
            ),
            "DataSize": " ".join(
                ["bit", "byte"] + [f"{p}{u}" for p in _BINARY for u in ("bit", "byte")]
            ),
            "Density": _DENSITY,
            "Distance": _LENGTH,
            "ElectricCharge": "coulomb",
            "Energy": (
                "electronvolt gigajoule joule kilojoule kilowattHour megaelectronvolt megajoule"
            ),
            "Force": _FORCE,
            "Frequency": "gigahertz hertz kilohertz megahertz",
            "Humidity": _DENSITY,
            "Illuminance": "footcandle lux",
            "Inductance": "henry microhenry millihenry",
            "Latitude": _ANGLE,
            "Length": _LENGTH,
            "Longitude": _ANGLE,
            "Luminance": "candelaPerSquareMetre",
            "Luminosity": _POWER,
            "LuminousFlux": "lumen",
            "LuminousIntensity": "candela",
            "MagneticFlux": "maxwell weber",
            "MagneticInduction": "tesla",
            "Mass": "gram kilogram microgram milligram slug tonne",
            "MassFlowRate": "gramPerHour gramPerSecond kilogramPerHour kilogramPerSecond",
            "Power": _POWER,
            "Pressure": (
                "bar inchesOfMercury inchesOfWater kilopascal millibar millimetresOfMercury "
                "pascal poundPerSquareInch"
            ),
            "RelativeHumidity": "percent unity",
            "Resistance": "kiloohm megaohm milliohm ohm",
            "SoundPressure": "bel decibel",
            "Temperature": "degreeCelsius degreeFahrenheit kelvin",
            "Thrust": _FORCE,
            "TimeSpan": "day hour microsecond millisecond minute nanosecond second year",
            "Torque": "newtonMetre",
            "Velocity": (
                "centimetrePerSecond kilometrePerHour kilometrePerSecond knot metrePerHour "
                "metrePerSecond milePerHour milePerSecond"
            ),
            "Voltage": "kilovolt megavolt microvolt millivolt volt",
            "Volume": (
                "cubicCentimetre cubicFoot cubicInch cubicMetre fluidOunce gallon litre millilitre"
            ),
            "VolumeFlowRate": "litrePerHour litrePerSecond millilitrePerHour millilitrePerSecond",
        }.items()
    }
)


def semantic_term(value: str) -> str | None:
    """The v2 semantic type ``value`` names, as a term or as its DTMI (else ``None``).

    >>> semantic_term("dtmi:standard:class:Temperature;2"), semantic_term("Colour")
    ('Temperature', None)
    """
    prefix = "dtmi:standard:class:"
    if value.startswith(prefix) and value.endswith(";2"):
        value = value[len(prefix) : -2]
    return value if value in UNITS else None


def unit_term(value: str) -> str:
    """A v2 unit written as its DTMI becomes its term (any other value unchanged)."""
    prefix = "dtmi:standard:unit:"
    if value.startswith(prefix) and value.endswith(";2"):
        return value[len(prefix) : -2]
    return value
