# Writes profile_exact.json: exact profile-likelihood bounds of the variance components for
# fits where lme4's confint (a spline through a grid of profile points) is visibly off its own
# profile. Each bound is a root (uniroot, tol 1e-10) of zeta on lme4's own ML deviance
# function lme4:::devfun2, the other SDs, correlations and sigma optimised by BOBYQA
# (minqa, rhoend 1e-10) at each trial value. Run from this folder:  Rscript profile_exact.R
# (Debian's r-base-core r-cran-lme4 1.1-31, r-cran-jsonlite, R 4.2.2). Not run by the tests.
suppressMessages({library(lme4); library(minqa); library(jsonlite)})
tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                     check.conv.grad = "ignore")  # as generate.R
fits <- list(
  dyestuff = lmer(Yield ~ 1 + (1 | Batch), read.csv("Dyestuff.csv"), REML = TRUE,
                  control = tight)
)
bounds_of <- function(fm) {
  dd <- lme4:::devfun2(fm)  # refits by ML; parameters: SDs and correlations, then sigma
  base <- attr(dd, "basedev"); opt <- attr(dd, "optimum")
  np <- length(opt) - length(fixef(fm))
  opt <- opt[seq_len(np)]
  names(opt) <- lme4:::profnames(fm, signames = FALSE)  # sd_...|group, cor_...|group, sigma
  is_cor <- grepl("^cor_", names(opt))
  lower <- ifelse(is_cor, -1 + 1e-7, 0); upper <- ifelse(is_cor, 1 - 1e-7, Inf)
  # sigma is kept off 0: an error inside devfun2 leaves its internal state broken
  lower[np] <- 0.01 * opt[np]
  zeta <- function(j, v) {
    free <- setdiff(seq_len(np), j)
    f <- function(x) {
      p <- opt; p[j] <- v; p[free] <- x
      d <- tryCatch(dd(p), error = function(e) Inf)
      if (is.finite(d)) d else 1e100
    }
    start <- pmin(pmax(opt[free], lower[free] + 1e-6), upper[free] - 1e-6)
    o <- bobyqa(start, f, lower = lower[free], upper = upper[free],
                control = list(rhoend = 1e-10, maxfun = 1e5))
    sign(v - opt[j]) * sqrt(max(o$fval - base, 0))
  }
  z <- qnorm(0.975)
  one <- function(j, side) {
    limit <- if (side < 0) lower[j] else if (is_cor[j]) upper[j] else opt[j] * 4 + 1
    if (side * zeta(j, limit) < z) return(limit)  # the likelihood never falls that far
    uniroot(function(v) zeta(j, v) - side * z, sort(c(opt[j], limit)), tol = 1e-10)$root
  }
  list(names = names(opt), lower = sapply(seq_len(np), one, side = -1),
       upper = sapply(seq_len(np), one, side = 1))
}
out <- lapply(fits, bounds_of)
out[["_provenance"]] <- paste("profile_exact.R,", R.version.string, "lme4",
                              as.character(packageVersion("lme4")))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "profile_exact.json")
