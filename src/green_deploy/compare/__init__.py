"""Comparing two studies cell by cell (issue 22, in progress): ``verdicts`` decides what a change
did to each matched cell's J/inference, or says it cannot tell yet."""
