"""Default parameters of the clinic simulator and where they come from.

Latent quantities are on the POMP metric (proportion of the scale's maximum possible
range, 0 = scale minimum, 1 = scale maximum), so one set of defaults serves every
instrument; a WAI-SR item (1–5) at POMP 0.72 is 1 + 0.72 x 4 = 3.88.

Levels of support, stated honestly:

* **checked** (read in a source through this project's search tools, Nov 2026):
  - Alliance–outcome correlation r = .278 across 295 studies (Flückiger, Del Re, Wampold &
    Horvath 2018, Psychotherapy 55(4), 316–340, doi:10.1037/pst0000172). Sets the default
    between-patient alliance effect on outcome (0.28, standardised).
  - The alliance predicts *next-session* symptoms within patients, beside a reverse
    effect of symptoms on alliance (Falkenström, Granström & Holmqvist 2013, J Couns
    Psychol 60(3), 317–328, doi:10.1037/a0032258; 646 primary-care patients, WAI-SR).
    Hence the lagged within-patient effect; its default size (0.10) is ours, not theirs.
  - Therapist variability in the alliance matters more for outcome than patient
    variability (Del Re, Flückiger, Horvath, Symonds & Wampold 2012, Clin Psychol Rev 32(7),
    642–649, doi:10.1016/j.cpr.2012.07.002). Hence a therapist random effect on alliance.
  - Rupture–repair episodes relate to better outcome (r = .24, 3 studies, 148 patients;
    Safran, Muran & Eubanks-Carter 2011, Psychotherapy 48(1), 80–87); unrepaired ruptures
    predicted worse outcome in prolonged exposure for PTSD, where ruptures occurred in 46 %
    of clients (McLaughlin et al. 2014, J Consult Clin Psychol 82(1), 112–121,
    doi:10.1037/a0034696). Hence injected ruptures, partial repair and extra drop-out after
    an unrepaired rupture.
* **unverified** (our choice, plausible but not read in a source here): the therapist ICC
  of 0.08, the mean level (POMP 0.72; 0.88 for the SRS, whose totals cluster near the
  top), the between-patient SD, growth, session noise, rupture rate (5 % of sessions),
  rupture size, repair probability (0.7) and delay, drop-out hazard, item noise. Treat
  them as knobs: fit them to your own clinic before using the simulator for power.
"""

from __future__ import annotations

# checked sources (see module docstring)
ALLIANCE_OUTCOME_R = 0.28  # Flückiger et al. 2018: r = .278
WITHIN_PATIENT_EFFECT = 0.10  # direction from Falkenström et al. 2013; size unverified

# unverified knobs (POMP metric unless stated)
THERAPIST_ICC = 0.08
LEVEL_POMP = 0.72
LEVEL_POMP_BY_INSTRUMENT = {"srs": 0.88}
BETWEEN_SD_POMP = 0.12
GROWTH_POMP_PER_LOG_SESSION = 0.03
SESSION_SD_POMP = 0.04
SESSION_AR = 0.3
FACET_SD_POMP = 0.04
ITEM_NOISE_SD_POMP = 0.09
RUPTURE_RATE = 0.05
RUPTURE_SIZE_POMP = 0.16
RUPTURE_SIZE_SD_POMP = 0.04
REPAIR_PROBABILITY = 0.7
REPAIR_AFTER = (1, 3)  # sessions, inclusive range
DROPOUT_HAZARD = 0.03
DROPOUT_AFTER_UNREPAIRED = 0.10
MISSING_RATE = 0.04
THERAPIST_BIAS_POMP = 0.03  # therapists rate slightly higher than patients
THERAPIST_SEES_RUPTURE = 0.5  # share of a rupture's drop the therapist perceives
PSQ_SENSITIVITY = 0.6
PSQ_FALSE_REPORT = 0.03

# outcome (a generic symptom score, higher = worse)
OUTCOME_BASELINE_MEAN = 20.0
OUTCOME_BASELINE_SD = 6.0
OUTCOME_IMPROVEMENT_PER_LOG_SESSION = 2.0
OUTCOME_NOISE_SD = 2.5
