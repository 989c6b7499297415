"""Offline geography: great-circle distance and a small gazetteer of world cities for reverse geocoding."""

from __future__ import annotations

import math

# (name, country, lat, lon, coastal): a reverse geocoder that names the nearest big city within ~60 km.
CITIES: tuple[tuple[str, str, float, float, bool], ...] = (
    ("Seattle", "USA", 47.6062, -122.3321, True),
    ("San Francisco", "USA", 37.7749, -122.4194, True),
    ("Denver", "USA", 39.7392, -104.9903, False),
    ("Chicago", "USA", 41.8781, -87.6298, True),
    ("New York", "USA", 40.7128, -74.0060, True),
    ("Honolulu", "USA", 21.3069, -157.8583, True),
    ("Vancouver", "Canada", 49.2827, -123.1207, True),
    ("Mexico City", "Mexico", 19.4326, -99.1332, False),
    ("Lima", "Peru", -12.0464, -77.0428, True),
    ("Buenos Aires", "Argentina", -34.6037, -58.3816, True),
    ("Rio de Janeiro", "Brazil", -22.9068, -43.1729, True),
    ("Reykjavik", "Iceland", 64.1466, -21.9426, True),
    ("Dublin", "Ireland", 53.3498, -6.2603, True),
    ("London", "UK", 51.5074, -0.1278, False),
    ("Lisbon", "Portugal", 38.7223, -9.1393, True),
    ("Barcelona", "Spain", 41.3874, 2.1686, True),
    ("Marseille", "France", 43.2965, 5.3698, True),
    ("Paris", "France", 48.8566, 2.3522, False),
    ("Amsterdam", "Netherlands", 52.3676, 4.9041, True),
    ("Berlin", "Germany", 52.5200, 13.4050, False),
    ("Zurich", "Switzerland", 47.3769, 8.5417, False),
    ("Rome", "Italy", 41.9028, 12.4964, False),
    ("Florence", "Italy", 43.7696, 11.2558, False),
    ("Athens", "Greece", 37.9838, 23.7275, True),
    ("Istanbul", "Turkey", 41.0082, 28.9784, True),
    ("Helsinki", "Finland", 60.1699, 24.9384, True),
    ("Cairo", "Egypt", 30.0444, 31.2357, False),
    ("Cape Town", "South Africa", -33.9249, 18.4241, True),
    ("Nairobi", "Kenya", -1.2921, 36.8219, False),
    ("Dubai", "UAE", 25.2048, 55.2708, True),
    ("Mumbai", "India", 19.0760, 72.8777, True),
    ("Bangkok", "Thailand", 13.7563, 100.5018, False),
    ("Singapore", "Singapore", 1.3521, 103.8198, True),
    ("Hong Kong", "China", 22.3193, 114.1694, True),
    ("Seoul", "South Korea", 37.5665, 126.9780, False),
    ("Tokyo", "Japan", 35.6762, 139.6503, True),
    ("Kyoto", "Japan", 35.0116, 135.7681, False),
    ("Sydney", "Australia", -33.8688, 151.2093, True),
    ("Melbourne", "Australia", -37.8136, 144.9631, True),
    ("Auckland", "New Zealand", -36.8485, 174.7633, True),
)
CITY_RADIUS_KM = 60.0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def nearest_city(lat: float | None, lon: float | None, max_km: float = CITY_RADIUS_KM) -> str:
    """The gazetteer city nearest to (lat, lon) within ``max_km``, else ""."""
    if lat is None or lon is None:
        return ""
    best, best_km = "", max_km
    for name, _country, city_lat, city_lon, _coastal in CITIES:
        km = haversine_km(lat, lon, city_lat, city_lon)
        if km <= best_km:
            best, best_km = name, km
    return best


def city_coordinates(name: str) -> tuple[float, float] | None:
    """(lat, lon) of a gazetteer city by name (case-insensitive), else None."""
    for city, _country, lat, lon, _coastal in CITIES:
        if city.lower() == name.strip().lower():
            return lat, lon
    return None
