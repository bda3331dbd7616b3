"""User studies: blind pairwise judgements by people, stored, scored and reported."""
