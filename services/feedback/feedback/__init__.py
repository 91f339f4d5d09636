"""leadpact feedback: sales activity flows back, rejections carry the contract's reasons, and
both teams are judged on one funnel."""
