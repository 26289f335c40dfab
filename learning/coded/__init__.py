"""Coded distributed gradient descent against stragglers: a master and N worker processes, gradient codes
(fractional repetition and cyclic, Tandon et al. 2017), Lagrange coded computing (Yu et al. 2019), multi-message
communication (Ozfatura, Ulukus, Gündüz 2020), the shifted-exponential delay model and its order statistics."""
