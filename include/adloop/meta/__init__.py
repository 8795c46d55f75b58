"""Meta APIs: the Conversions API sender (audiences and insights arrive with their issues)."""
