"""Account onboarding beyond auth.json: OpenAI OAuth link/relink (browser PKCE with a pasted callback URL, or
device code) and pool invites. See docs/ONBOARDING.md for the flows and the error codes."""

from pooler.onboarding.errors import ERROR_MESSAGES, OnboardingError

__all__ = ["ERROR_MESSAGES", "OnboardingError"]
