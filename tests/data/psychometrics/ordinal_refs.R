# Regenerates ordinal_lavaan.json: lavaan's polychoric correlations, their asymptotic covariance
# (NACOV, "gamma") and WLSMV fits, which tests/research/test_psychometrics_ordinal.py checks
# alliance.research.psychometrics.ordinal against. Run from this folder:  Rscript ordinal_refs.R
# Needs Debian's r-base-core (R 4.2.2), r-cran-lavaan (0.6-14), r-cran-psych (2.2.9) and
# r-cran-jsonlite. Not run by the test suite. The CSVs here are copies of ../shared/oracles.
suppressMessages({library(lavaan); library(psych); library(jsonlite)})
s10 <- function(x) if (is.null(x)) NA else signif(x, 10)

waisr <- read.csv("synthetic_waisr_items.csv")[, -1]
wai_items <- names(waisr)
hs <- read.csv("HolzingerSwineford1939.csv")
# HolzingerSwineford x1..x9 are continuous: cut each into 4 categories at fixed points
# (category = 1 + number of cut points below the value; no value lies on a cut point)
cuts <- list(x1 = c(4.1, 5.1, 5.9), x2 = c(5.3, 6.1, 7.1), x3 = c(1.3, 2.2, 3.4),
             x4 = c(2.1, 3.1, 4.1), x5 = c(3.1, 4.6, 5.6), x6 = c(1.3, 2.1, 2.9),
             x7 = c(3.3, 4.1, 5.1), x8 = c(4.72, 5.52, 6.32), x9 = c(4.52, 5.43, 6.22))
hs4 <- as.data.frame(lapply(names(cuts), function(v)
  1L + rowSums(outer(hs[[v]], cuts[[v]], ">"))))
names(hs4) <- names(cuts)
# a ceiling effect: WAI-SR answers above 3 all recoded to 3 (three categories, ~70% on top)
ceiling3 <- as.data.frame(lapply(waisr, function(x) pmin(x, 3L)))
# three binary items whose a x b table has one empty cell (lavaan adds 0.5 there, keeping
# the margins); patterns (a, b, c) with their counts
patterns <- data.frame(a = c(1, 1, 1, 1, 2, 2), b = c(1, 1, 2, 2, 2, 2),
                       c = c(1, 2, 1, 2, 1, 2), n = c(14, 6, 5, 7, 6, 22))
binary <- patterns[rep(seq_len(nrow(patterns)), patterns$n), c("a", "b", "c")]

polychorics <- function(d) {
  items <- names(d)
  th <- lavCor(d, ordered = items, output = "th")
  r <- lavCor(d, ordered = items, output = "cor")
  pc <- psych::polychoric(d, correct = 0)  # no continuity correction, as lavaan for >2x2
  list(items = items, th = as.list(s10(th)), cor = unname(s10(unclass(r))),
       psych_rho = unname(s10(pc$rho)), psych_tau = unname(s10(pc$tau)))
}

fit_export <- function(model, d, ...) {
  fit <- cfa(model, data = d, ordered = names(d), estimator = "WLSMV", ...)
  pe <- parameterEstimates(fit)
  ss <- standardizedSolution(fit)
  keys <- c("npar", "chisq", "df", "pvalue", "chisq.scaled", "df.scaled", "pvalue.scaled",
            "chisq.scaling.factor", "baseline.chisq", "baseline.df", "baseline.chisq.scaled",
            "baseline.df.scaled", "cfi", "cfi.scaled", "tli", "tli.scaled", "rmsea",
            "rmsea.scaled", "rmsea.ci.lower", "rmsea.ci.upper", "rmsea.ci.lower.scaled",
            "rmsea.ci.upper.scaled", "rmsea.pvalue", "rmsea.pvalue.scaled", "baseline.pvalue",
            "baseline.pvalue.scaled", "cfi.robust", "rmsea.robust", "srmr", "fmin")
  fm <- fitMeasures(fit)
  keys <- intersect(keys, names(fm))
  keys <- keys[!is.na(fm[keys])]  # the *.robust measures are NA for ordinal data in 0.6-14
  ts <- fit@test$scaled.shifted
  gamma <- lavInspect(fit, "gamma")
  list(
    model = model, call = deparse(fit@call),
    converged = lavInspect(fit, "converged"),
    params = data.frame(lhs = pe$lhs, op = pe$op, rhs = pe$rhs,
                        est = s10(pe$est), se = s10(pe$se)),
    std = data.frame(lhs = ss$lhs, op = ss$op, rhs = ss$rhs,
                     est_std = s10(ss$est.std), se = s10(ss$se)),
    fit = as.list(s10(unclass(fm[keys]))),
    scaled_shifted = list(scaling_factor = s10(ts$scaling.factor),
                          shift_parameter = s10(ts$shift.parameter),
                          trace_ugamma = s10(ts$trace.UGamma),
                          trace_ugamma2 = s10(ts$trace.UGamma2)),
    gamma_names = rownames(gamma), gamma_diag = s10(diag(gamma)),
    gamma = if (nrow(gamma) <= 70) unname(s10(unclass(gamma))) else NULL
  )
}

wai3 <- "goal =~ goal1 + goal2 + goal3 + goal4
task =~ task1 + task2 + task3 + task4
bond =~ bond1 + bond2 + bond3 + bond4"
wai1 <- paste("f =~", paste(wai_items, collapse = " + "))
wai_bi <- paste(wai3, "\ng =~", paste(wai_items, collapse = " + "))
hs3 <- "visual =~ x1 + x2 + x3
textual =~ x4 + x5 + x6
speed =~ x7 + x8 + x9"

out <- list(
  `_provenance` = list(
    generator = sprintf("%s; lavaan %s, psych %s, jsonlite %s (Debian bookworm apt packages)",
                        R.version.string, packageVersion("lavaan"), packageVersion("psych"),
                        packageVersion("jsonlite")),
    script = "tests/data/psychometrics/ordinal_refs.R (Rscript ordinal_refs.R, from that folder)",
    date = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
    data = paste("synthetic_waisr_items.csv and HolzingerSwineford1939.csv, copies of",
                 "../shared/oracles (see its README); hs4 = x1..x9 cut at `cuts`;",
                 "ceiling3 = pmin(WAI-SR item, 3); binary = `binary_patterns` expanded"),
    calls = c("lavCor(d, ordered = names(d), output = 'th')",
              "lavCor(d, ordered = names(d), output = 'cor')",
              "psych::polychoric(d, correct = 0)",
              "cfa(model, data = d, ordered = names(d), estimator = 'WLSMV', ...)",
              "parameterEstimates(fit); standardizedSolution(fit); fitMeasures(fit)",
              "fit@test$scaled.shifted; lavInspect(fit, 'gamma')"),
    precision = "signif(x, 10)"
  ),
  cuts = cuts,
  binary_patterns = patterns,
  polychoric = list(waisr = polychorics(waisr), hs4 = polychorics(hs4),
                    ceiling3 = polychorics(ceiling3), binary = polychorics(binary)),
  cfa = list(
    waisr_3f = fit_export(wai3, waisr),
    waisr_1f = fit_export(wai1, waisr),
    waisr_bifactor = fit_export(wai_bi, waisr, orthogonal = TRUE, std.lv = TRUE),
    hs4_3f = fit_export(hs3, hs4),
    ceiling3_3f = fit_export(wai3, ceiling3),
    # three indicators, one factor: saturated (df = 0)
    goal_saturated = fit_export("f =~ goal1 + goal2 + goal3", waisr[, 1:3])
  )
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, dataframe = "rows", null = "null",
                  na = "null", pretty = FALSE), "ordinal_lavaan.json")
