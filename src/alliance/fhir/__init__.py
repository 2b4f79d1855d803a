"""FHIR R4: instruments as Questionnaires, answers as QuestionnaireResponses, scores as
Observations (an adapter: it converts and checks, the scoring core scores).

Example
-------
>>> from alliance import fhir
>>> fhir.questionnaire("srs")["item"][0]["type"]
'decimal'
"""

from alliance.fhir._common import FHIR_VERSION, FhirInputError, Issue
from alliance.fhir.questionnaire import all_questionnaires, form_of, questionnaire

__all__ = [
    "FHIR_VERSION",
    "FhirInputError",
    "Issue",
    "all_questionnaires",
    "form_of",
    "questionnaire",
]
