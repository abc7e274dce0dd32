"""The LaTeX of the spatial layer kinds (derive.tables.spatial): each kind's forward and backward equations.

{l} is the layer's number, {m} the layer below's, {act} its activation (filled in by derive.report).
"""

CONV_BACKWARD = (
    r"\delta^{({l})} = \frac{\partial C}{\partial a^{({l})}} \odot {act}'(z^{({l})})",
    r"\frac{\partial C}{\partial W^{({l})}_{oc}} = \sum_{b} x_{bc} \star \delta^{({l})}_{bo}",
    r"\frac{\partial C}{\partial b^{({l})}_{o}} = \sum_{b} \sum_{i} \delta^{({l})}_{bo,i}",
    r"\frac{\partial C}{\partial x_{bc}} = \sum_{o} \operatorname{pad}_{k-1-p}\bigl(\operatorname{dilate}_{s}(\delta^{({l})}_{bo})\bigr) \star \operatorname{rot}_{180}(W^{({l})}_{oc})",
)

LATEX: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "conv2d": ((r"z^{({l})}_{bo} = \sum_{c} W^{({l})}_{oc} \star x_{bc} + b^{({l})}_{o}",
                        r"a^{({l})} = {act}(z^{({l})})"),
              CONV_BACKWARD),
    "conv1d": ((r"z^{({l})}_{bo} = \sum_{c} W^{({l})}_{oc} \star x_{bc} + b^{({l})}_{o}",
                        r"a^{({l})} = {act}(z^{({l})})"),
              CONV_BACKWARD),
    "avgpool2d": ((r"y^{({l})}_{bc,i} = \frac{1}{k} \sum_{j \in w(i)} x_{bc,j}",),
              (r"\frac{\partial C}{\partial x_{bc,j}} = \sum_{i : j \in w(i)} \frac{1}{k} \frac{\partial C}{\partial y^{({l})}_{bc,i}}",)),
    "maxpool2d": ((r"y^{({l})}_{bc,i} = \max_{j \in w(i)} x_{bc,j}",),
              (r"\frac{\partial C}{\partial x_{bc,j}} = \sum_{i : j \in w(i)} [\, j = \operatorname{argmax}_{w(i)} x_{bc} \,] \frac{\partial C}{\partial y^{({l})}_{bc,i}}",)),
    "flatten": ((r"a^{({l})} = \operatorname{vec}(a^{({m})})",),
              (r"\frac{\partial C}{\partial a^{({m})}} = \operatorname{vec}^{-1}\Bigl(\frac{\partial C}{\partial a^{({l})}}\Bigr)",)),
    "attention": ((r"Q = X W_q^{({l})}, \quad K = X W_k^{({l})}, \quad V = X W_v^{({l})}",
                        r"S = \frac{Q K^{\top}}{\sqrt{d_k}}, \quad P = \operatorname{softmax}(S), \quad O = P V"),
              (r"\frac{\partial C}{\partial V} = P^{\top} \frac{\partial C}{\partial O}, \quad \frac{\partial C}{\partial P} = \frac{\partial C}{\partial O} V^{\top}",
                         r"\frac{\partial C}{\partial S} = P \odot \Bigl(\frac{\partial C}{\partial P} - \operatorname{rowsum}\bigl(\frac{\partial C}{\partial P} \odot P\bigr)\Bigr)",
                         r"\frac{\partial C}{\partial Q} = \frac{1}{\sqrt{d_k}} \frac{\partial C}{\partial S} K, \quad \frac{\partial C}{\partial K} = \frac{1}{\sqrt{d_k}} \Bigl(\frac{\partial C}{\partial S}\Bigr)^{\top} Q",
                         r"\frac{\partial C}{\partial W_q^{({l})}} = X^{\top} \frac{\partial C}{\partial Q}, \quad \frac{\partial C}{\partial W_k^{({l})}} = X^{\top} \frac{\partial C}{\partial K}, \quad \frac{\partial C}{\partial W_v^{({l})}} = X^{\top} \frac{\partial C}{\partial V}",
                         r"\frac{\partial C}{\partial X} = \frac{\partial C}{\partial Q} W_q^{({l})\top} + \frac{\partial C}{\partial K} W_k^{({l})\top} + \frac{\partial C}{\partial V} W_v^{({l})\top}")),
    "rnn": ((r"h_t = {act}(x_t W_{xh}^{({l})} + h_{t-1} W_{hh}^{({l})} + b^{({l})}), \quad h_0 = 0",),
              (r"\delta_t = \Bigl(\delta_{t+1} W_{hh}^{({l})\top} + \frac{\partial C}{\partial h_t}\Bigr) \odot {act}'(z_t)",
                         r"\frac{\partial C}{\partial W_{xh}^{({l})}} = \sum_t x_t^{\top} \delta_t, \quad \frac{\partial C}{\partial W_{hh}^{({l})}} = \sum_t h_{t-1}^{\top} \delta_t, \quad \frac{\partial C}{\partial b^{({l})}} = \sum_t \sum_b \delta_t",
                         r"\frac{\partial C}{\partial x_t} = \delta_t W_{xh}^{({l})\top}")),
}
