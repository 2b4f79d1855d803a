# Regenerates omega_psych.json: psych's exploratory factor analysis (minres + oblimin) and its
# Schmid-Leiman omega, which tests/research/test_psychometrics_omega.py checks
# alliance.research.psychometrics.omega against. Run from this folder:  Rscript omega_refs.R
# Needs Debian's r-base-core (R 4.2.2), r-cran-psych (2.2.9), r-cran-gparotation (2022.10-2)
# and r-cran-jsonlite. Not run by the test suite. The CSVs here are copies of ../shared/oracles.
suppressMessages({library(psych); library(GPArotation); library(jsonlite)})
s10 <- function(x) signif(as.vector(unclass(x)), 10)
m10 <- function(x) { x <- unclass(as.matrix(x)); dimnames(x) <- NULL; signif(x, 10) }

hs <- read.csv("HolzingerSwineford1939.csv")[, paste0("x", 1:9)]
waisr <- read.csv("synthetic_waisr_items.csv")[, -1]

export <- function(d) {
  r <- cor(d)
  unrot <- fa(r, 3, fm = "minres", rotate = "none")
  vari <- fa(r, 3, fm = "minres", rotate = "varimax")
  obl <- fa(r, 3, fm = "minres", rotate = "oblimin")
  om <- omega(d, 3, plot = FALSE)
  sl <- om$schmid$sl
  list(
    items = names(d), n = nrow(d), smc = s10(smc(r)),
    fa_none = list(loadings = m10(unrot$loadings), communality = s10(unrot$communality)),
    fa_varimax = list(loadings = m10(vari$loadings)),
    fa_oblimin = list(loadings = m10(obl$loadings), Phi = m10(obl$Phi),
                      communality = s10(obl$communality), uniquenesses = s10(obl$uniquenesses)),
    omega = list(omega_h = s10(om$omega_h), omega_t = s10(om$omega.tot), alpha = s10(om$alpha),
                 omega_lim = s10(om$omega.lim), ECV = s10(om$ECV),
                 group_total = s10(om$omega.group$total),
                 group_general = s10(om$omega.group$general),
                 group_group = s10(om$omega.group$group),
                 sl_columns = colnames(sl), sl = m10(sl),
                 oblique = m10(om$schmid$oblique), phi = m10(om$schmid$phi),
                 gloading = s10(om$schmid$gloading), key = s10(om$key)))
}

out <- list(
  `_provenance` = list(
    generator = sprintf("%s; psych %s, GPArotation %s, jsonlite %s (Debian bookworm apt packages)",
                        R.version.string, packageVersion("psych"), packageVersion("GPArotation"),
                        packageVersion("jsonlite")),
    script = "tests/data/psychometrics/omega_refs.R (Rscript omega_refs.R, from that folder)",
    date = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
    data = paste("HolzingerSwineford1939.csv x1..x9 and synthetic_waisr_items.csv without id,",
                 "copies of ../shared/oracles (see its README)"),
    calls = c("r <- cor(d)", "smc(r)",
              "fa(r, 3, fm = 'minres', rotate = 'none')",
              "fa(r, 3, fm = 'minres', rotate = 'varimax')",
              "fa(r, 3, fm = 'minres', rotate = 'oblimin')",
              "omega(d, 3, plot = FALSE)  # defaults: fm = 'minres', rotate = 'oblimin', flip",
              "omega(waisr, 2, plot = FALSE)  # two factors: option = 'equal'"),
    precision = "signif(x, 10); matrices are row-major lists of rows (items x factors)"),
  HolzingerSwineford1939 = export(hs),
  synthetic_waisr = export(waisr),
  synthetic_waisr_2factors = local({
    om2 <- suppressMessages(omega(waisr, 2, plot = FALSE))  # option = "equal" (default)
    list(omega_h = s10(om2$omega_h), omega_t = s10(om2$omega.tot), sl = m10(om2$schmid$sl),
         gloading = s10(om2$schmid$gloading))
  }))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, matrix = "rowmajor", pretty = TRUE),
           "omega_psych.json")
