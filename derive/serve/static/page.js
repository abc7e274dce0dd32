// Typeset every element with a data-tex attribute (the claim's two sides, a repair) with KaTeX, served locally.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-tex]").forEach(function (el) {
    katex.render(el.dataset.tex, el, {displayMode: el.classList.contains("display"), throwOnError: false});
    el.setAttribute("data-typeset", "yes");
  });
  document.body.setAttribute("data-ready", "yes");
});
