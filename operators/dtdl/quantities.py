"""The QuantitativeTypes v1 extension of DTDL v3: semantic types, unit types and units.

A Telemetry, Property, Field, MapValue, CommandRequest or CommandResponse co-typed with a
semantic type (``"@type": ["Telemetry", "Temperature"]``) has a numeric schema and a ``unit``
drawn from the semantic type's unit type. The facts below follow the extension's reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

CONTEXT = "dtmi:dtdl:extension:quantitativeTypes;1"
#: The extension's IRIs: a term may also be written as ``<prefix><kind>:<term>``.
IRI_PREFIX = "dtmi:dtdl:extension:quantitativeTypes:v1:"
UNIT_IRI = IRI_PREFIX + "property:unit"

_POWER = (
    "britishThermalUnitPerHour gigajoulePerHour gigawatt horsepower joulePerHour "
    "joulePerSecond kiloBritishThermalUnitPerHour kilojoulePerHour kilojoulePerSecond kilowatt "
    "kilowattHourPerYear megajoulePerHour megawatt microwatt milliwatt tonOfRefrigeration watt"
)
_LENGTH = (
    "astronomicalUnit centimetre foot inch kilometre metre micrometre mile millimetre "
    "nanometre nauticalMile"
)
_ANGLE = "degreeOfArc minuteOfArc radian secondOfArc turn"
_UNITLESS = "partsPerBillion partsPerMillion partsPerQuadrillion partsPerTrillion percent unity"
_DENSITY = "gramPerCubicMetre kilogramPerCubicMetre microgramPerCubicMetre milligramPerCubicMetre"
_FORCE = "newton ounce pound ton"
_BINARY = "exbi gibi kibi mebi tebi yobi zebi"

#: Unit type -> the units it admits.
UNIT_TYPES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        name: frozenset(units.split())
        for name, units in {
            "AccelerationUnit": "centimetrePerSecondSquared gForce metrePerSecondSquared",
            "AngleUnit": _ANGLE,
            "AngularAccelerationUnit": "radianPerSecondSquared",
            "AngularVelocityUnit": (
                "degreePerSecond radianPerSecond revolutionPerMinute revolutionPerSecond"
            ),
            "ApparentEnergyUnit": (
                "gigavoltAmpereHour kilovoltAmpereHour megavoltAmpereHour voltAmpereHour"
            ),
            "ApparentPowerUnit": (
                "gigavoltAmpere kilovoltAmpere megavoltAmpere millivoltAmpere voltAmpere"
            ),
            "AreaUnit": (
                "acre hectare squareCentimetre squareFoot squareInch squareKilometre "
                "squareMetre squareMillimetre"
            ),
            "CapacitanceUnit": "farad microfarad millifarad nanofarad picofarad",
            "ChargeUnit": "ampereHour coulomb milliampereHour",
            "CurrentUnit": "ampere kiloampere microampere milliampere",
            "DataRateUnit": " ".join(
                ["bitPerSecond", "bytePerSecond"]
                + [f"{p}{u}PerSecond" for p in _BINARY.split() for u in ("bit", "byte")]
            ),
            "DataSizeUnit": " ".join(
                ["bit", "byte"] + [f"{p}{u}" for p in _BINARY.split() for u in ("bit", "byte")]
            ),
            "DensityUnit": _DENSITY,
            "EnergyUnit": (
                "britishThermalUnit electronvolt gigajoule gigawattHour joule "
                "kiloBritishThermalUnit kilojoule kilowattHour megaelectronvolt megajoule "
                "megawattHour milliwattHour terawattHour wattHour"
            ),
            "ForceUnit": _FORCE,
            "FrequencyUnit": "gigahertz hertz kilohertz megahertz millihertz",
            "IlluminanceUnit": "footcandle lux",
            "InductanceUnit": "henry microhenry millihenry",
            "IonizingRadiationDoseUnit": (
                "gray microgray microsievert milligray millisievert sievert"
            ),
            "IrradianceUnit": "wattPerSquareMetre",
            "LengthUnit": _LENGTH,
            "LuminanceUnit": "candelaPerSquareMetre",
            "LuminousFluxUnit": "lumen",
            "LuminousIntensityUnit": "candela",
            "MagneticFluxUnit": "maxwell weber",
            "MagneticInductionUnit": "gauss tesla",
            "MassUnit": "gram kilogram massPound microgram milligram slug tonne",
            "MassFlowRateUnit": (
                "gramPerHour gramPerSecond kilogramPerHour kilogramPerSecond massPoundPerHour"
            ),
            "PowerUnit": _POWER,
            "PressureUnit": (
                "bar decapascal hectopascal inchesOfMercury inchesOfWater kilopascal millibar "
                "millimetresOfMercury pascal poundPerSquareInch"
            ),
            "RadioactivityUnit": "becquerel gigabecquerel kilobecquerel megabecquerel",
            "ReactiveEnergyUnit": (
                "gigavoltAmpereReactiveHour kilovoltAmpereReactiveHour "
                "megavoltAmpereReactiveHour voltAmpereReactiveHour"
            ),
            "ReactivePowerUnit": (
                "gigavoltAmpereReactive kilovoltAmpereReactive megavoltAmpereReactive "
                "millivoltAmpereReactive voltAmpereReactive"
            ),
            "ResistanceUnit": "kiloohm megaohm milliohm ohm",
            "SoundPressureUnit": "bel decibel",
            "TemperatureUnit": "degreeCelsius degreeFahrenheit kelvin",
            "TimeUnit": "day hour microsecond millisecond minute nanosecond second year",
            "TorqueUnit": "newtonMetre",
            "Unitless": _UNITLESS,
            "VelocityUnit": (
                "centimetrePerSecond kilometrePerHour kilometrePerSecond knot metrePerHour "
                "metrePerSecond milePerHour milePerSecond"
            ),
            "VoltageUnit": "kilovolt megavolt microvolt millivolt volt",
            "VolumeUnit": (
                "cubicCentimetre cubicFoot cubicInch cubicMetre fluidOunce gallon litre millilitre"
            ),
            "VolumeFlowRateUnit": (
                "cubicFootPerMinute cubicMetrePerHour cubicMetrePerMinute cubicMetrePerSecond "
                "gallonPerHour gallonPerMinute litrePerHour litrePerMinute litrePerSecond "
                "millilitrePerHour millilitrePerMinute millilitrePerSecond"
            ),
        }.items()
    }
)

#: Semantic type -> its unit type. Most share a name with their unit type; a few do not
#: (``Humidity`` is a density, ``Luminosity`` a power, ``Distance`` a length...).
SEMANTIC_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "Acceleration": "AccelerationUnit",
        "Angle": "AngleUnit",
        "AngularAcceleration": "AngularAccelerationUnit",
        "AngularVelocity": "AngularVelocityUnit",
        "ApparentEnergy": "ApparentEnergyUnit",
        "ApparentPower": "ApparentPowerUnit",
        "Area": "AreaUnit",
        "Capacitance": "CapacitanceUnit",
        "Concentration": "Unitless",
        "Current": "CurrentUnit",
        "DataRate": "DataRateUnit",
        "DataSize": "DataSizeUnit",
        "Density": "DensityUnit",
        "Distance": "LengthUnit",
        "ElectricCharge": "ChargeUnit",
        "Energy": "EnergyUnit",
        "EnergyRate": "PowerUnit",
        "Force": "ForceUnit",
        "Frequency": "FrequencyUnit",
        "Humidity": "DensityUnit",
        "Illuminance": "IlluminanceUnit",
        "Inductance": "InductanceUnit",
        "IonizingRadiationDose": "IonizingRadiationDoseUnit",
        "Irradiance": "IrradianceUnit",
        "Latitude": "AngleUnit",
        "Length": "LengthUnit",
        "Longitude": "AngleUnit",
        "Luminance": "LuminanceUnit",
        "Luminosity": "PowerUnit",
        "LuminousFlux": "LuminousFluxUnit",
        "LuminousIntensity": "LuminousIntensityUnit",
        "MagneticFlux": "MagneticFluxUnit",
        "MagneticInduction": "MagneticInductionUnit",
        "Mass": "MassUnit",
        "MassFlowRate": "MassFlowRateUnit",
        "Power": "PowerUnit",
        "Pressure": "PressureUnit",
        "Radioactivity": "RadioactivityUnit",
        "ReactiveEnergy": "ReactiveEnergyUnit",
        "ReactivePower": "ReactivePowerUnit",
        "RelativeDensity": "Unitless",
        "RelativeHumidity": "Unitless",
        "Resistance": "ResistanceUnit",
        "SoundPressure": "SoundPressureUnit",
        "Temperature": "TemperatureUnit",
        "Thrust": "ForceUnit",
        "TimeSpan": "TimeUnit",
        "Torque": "TorqueUnit",
        "Velocity": "VelocityUnit",
        "Voltage": "VoltageUnit",
        "Volume": "VolumeUnit",
        "VolumeFlowRate": "VolumeFlowRateUnit",
    }
)


def term(value: str, kind: str) -> str:
    """The term of a QuantitativeTypes IRI of ``kind`` (class, unit, enum); else ``value``.

    >>> term("dtmi:dtdl:extension:quantitativeTypes:v1:class:Temperature", "class")
    'Temperature'
    """
    prefix = f"{IRI_PREFIX}{kind}:"
    found = value[len(prefix) :] if value.startswith(prefix) else value
    return "PowerUnit" if kind == "enum" and found == "EnergyRateUnit" else found


def units_for(semantic_type: str) -> frozenset[str]:
    """The units a semantic type admits (empty for an unknown type).

    >>> "degreeCelsius" in units_for("Temperature"), "kelvin" in units_for("Pressure")
    (True, False)
    """
    unit_type = SEMANTIC_TYPES.get(semantic_type)
    return UNIT_TYPES[unit_type] if unit_type else frozenset()
